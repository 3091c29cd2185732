/**
 * cosign's argv as the module builds it: by digest only, secrets only as
 * paths, the transparency-log choice as data. (Real cosign runs them in
 * test/release/sign-published.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { loadManifest } from "../../src/core/manifest.js";
import {
  attestArgs,
  attestedTypes,
  CONTAINER_PATHS,
  cosignTags,
  dockerConfig,
  publicKeyArgs,
  signArgs,
  signedDigests,
  verifierOf,
  verifyArgs,
  verifyAttestationArgs,
} from "../../src/supply-chain/signing.js";

const D = `sha256:${"ab".repeat(32)}`;
const REF = `registry.example.com/hpc/slinky/slurmd@${D}`;
const P = CONTAINER_PATHS;

describe("cosign argv", () => {
  it("signs key-based by digest, without a transparency log unless a Rekor URL is given", () => {
    expect(signArgs(REF, { kind: "key", rekorUrl: null }, P)).toEqual(["sign", "--yes", `--key=${P.key}`, "--tlog-upload=false", REF]);
    expect(signArgs(REF, { kind: "key", rekorUrl: "https://rekor.site.example" }, P, { recursive: true })).toEqual([
      "sign",
      "--yes",
      `--key=${P.key}`,
      "--rekor-url=https://rekor.site.example",
      "--recursive",
      REF,
    ]);
  });

  it("signs keyless with the Fulcio and Rekor given and the token as a file path", () => {
    expect(signArgs(REF, { kind: "keyless", fulcioUrl: "https://fulcio.site.example", rekorUrl: "https://rekor.site.example" }, P)).toEqual([
      "sign",
      "--yes",
      "--fulcio-url=https://fulcio.site.example",
      "--rekor-url=https://rekor.site.example",
      `--identity-token=${P.token}`,
      REF,
    ]);
  });

  it("attests both predicate types from files", () => {
    const signer = { kind: "key", rekorUrl: null } as const;
    expect(attestArgs(REF, "spdxjson", signer, P)).toEqual([
      "attest",
      "--yes",
      `--key=${P.key}`,
      "--tlog-upload=false",
      "--type=spdxjson",
      `--predicate=${P.predicates}/${"ab".repeat(32)}.spdxjson.json`,
      REF,
    ]);
    expect(attestArgs(REF, "slsaprovenance1", signer, P)).toContain("--type=slsaprovenance1");
  });

  it("verifies with the public key (log ignored only when signing skipped it) or the certificate identity", () => {
    expect(verifyArgs(REF, verifierOf({ kind: "key", rekorUrl: null }), P)).toEqual([
      "verify",
      `--key=${P.publicKey}`,
      "--insecure-ignore-tlog=true",
      "--output=json",
      REF,
    ]);
    expect(verifyArgs(REF, verifierOf({ kind: "key", rekorUrl: "https://rekor.site.example" }), P)).not.toContain("--insecure-ignore-tlog=true");
    const keyless = verifierOf(
      { kind: "keyless", fulcioUrl: "https://fulcio.sigstore.dev", rekorUrl: "https://rekor.sigstore.dev" },
      { certificateIdentity: "https://gitlab.com/g/p//.gitlab-ci.yml@refs/heads/main", certificateOidcIssuer: "https://gitlab.com" },
    );
    expect(verifyAttestationArgs(REF, "spdxjson", keyless, P)).toEqual([
      "verify-attestation",
      "--certificate-identity=https://gitlab.com/g/p//.gitlab-ci.yml@refs/heads/main",
      "--certificate-oidc-issuer=https://gitlab.com",
      "--rekor-url=https://rekor.sigstore.dev",
      "--type=spdxjson",
      "--output=json",
      REF,
    ]);
    expect(() => verifierOf({ kind: "keyless", fulcioUrl: "https://f", rekorUrl: "https://r" })).toThrow(/certificate identity/);
  });

  it("refuses to sign or attest anything but a reference by digest", () => {
    const signer = { kind: "key", rekorUrl: null } as const;
    expect(() => signArgs("registry.example.com/hpc/slinky/slurmd:25.11-ubuntu24.04-latest", signer, P)).toThrow(/not a reference by digest/);
    expect(() => attestArgs("registry.example.com/x@sha256:abc", "spdxjson", signer, P)).toThrow(/not a reference by digest/);
  });

  it("derives the public key into its path", () => {
    expect(publicKeyArgs(P)).toEqual(["public-key", `--key=${P.key}`, `--outfile=${P.publicKey}`]);
  });

  it("writes registry credentials as a docker config (a secret file), cosign's tags as it names them", () => {
    const config = JSON.parse(dockerConfig("registry.example.com", "u", "p@ss")) as { auths: Record<string, { auth: string }> };
    expect(Buffer.from(config.auths["registry.example.com"]!.auth, "base64").toString()).toBe("u:p@ss");
    expect(cosignTags(D)).toEqual({ signature: `sha256-${"ab".repeat(32)}.sig`, attestation: `sha256-${"ab".repeat(32)}.att` });
  });

  it("reads which digest and which predicate types cosign verified", () => {
    const statement = (type: string, sha: string) =>
      JSON.stringify({ payload: Buffer.from(JSON.stringify({ predicateType: type, subject: [{ digest: { sha256: sha } }] })).toString("base64") });
    const out = [statement("https://spdx.dev/Document", "ab".repeat(32)), statement("https://slsa.dev/provenance/v1", "cd".repeat(32)), "noise"].join("\n");
    expect(attestedTypes(out, D)).toEqual(["https://spdx.dev/Document"]);
    expect(signedDigests(JSON.stringify([{ critical: { image: { "docker-manifest-digest": D } } }]))).toEqual([D]);
    expect(signedDigests("not json")).toEqual([]);
  });
});

describe("the pinned cosign", () => {
  it("is an image pinned by digest in manifest.json; a site may point it at a mirror", () => {
    const { cosign } = loadManifest();
    expect(cosign.image).toBe(`ghcr.io/sigstore/cosign/cosign:v${cosign.version}`);
    expect(cosign.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(() => loadManifest({ cosign: { digest: "sha256:XYZ" } })).toThrow(/cosign\.digest/);
    expect(() => loadManifest({ cosign: { image: "ghcr.io/sigstore/cosign/cosign:v2.5.0@sha256:" + "a".repeat(64) } })).toThrow(/cosign\.image/);
    expect(loadManifest({ cosign: { image: "mirror.example/sigstore/cosign:v2.5.0" } }).cosign.image).toBe("mirror.example/sigstore/cosign:v2.5.0");
  });
});
