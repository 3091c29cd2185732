/**
 * Signing, attesting and verifying with REAL cosign (Debian trixie's 2.5
 * package, test/setup.sh) against a REAL registry (docker-registry on
 * 127.0.0.1 with basic auth), with a key pair made here under a canary
 * password. The argv is the module's (src/signing.ts); the runner is the
 * host's cosign (test/registry/cosign.ts) where the engine runs cosign's
 * pinned image.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegistryClient } from "../../src/registry.js";
import { cosignTags, type Predicates, signImage, type Signer, type Verifier, verifyReference } from "../../src/signing.js";
import { cosignVersion, type HostCosign, hostCosign } from "./cosign.js";
import { pushSynthetic, type RunningRegistry, startRegistry } from "./harness.js";
import { standInPredicates } from "./predicates.js";

const KEY_PASSWORD = `key-canary-${Date.now().toString(36)}-S3cr3t`;
const REGISTRY_PASSWORD = `registry-canary-${Date.now().toString(36)}-Pa55`;
const USER = { username: "gitlab-ci-token", password: REGISTRY_PASSWORD };
const HAVE_COSIGN = cosignVersion() !== null;

/** Every file under a directory (the registry's storage: blobs, manifests, links). */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: false })
    .map((name) => join(dir, String(name)))
    .filter((path) => statSync(path).isFile());
}

describe.skipIf(!HAVE_COSIGN)("key-based signing with real cosign on a real registry", () => {
  let registry: RunningRegistry;
  let cosign: HostCosign;
  let client: RegistryClient;
  const signer: Signer = { kind: "key", rekorUrl: null };
  const verifier: Verifier = { kind: "key", rekorUrl: null };
  let privateKey: string;

  beforeAll(async () => {
    registry = await startRegistry({ kind: "htpasswd", users: [USER] });
    client = new RegistryClient({ ...USER, plainHttp: true });
    cosign = hostCosign({ host: registry.host, ...USER }, KEY_PASSWORD);
    cosign.generateKeyPair(KEY_PASSWORD);
    privateKey = readFileSync(cosign.paths.key, "utf8");
  });
  afterAll(async () => {
    await registry?.stop();
    cosign?.remove();
  });

  const predicates = (image: string, digest: string): Predicates => standInPredicates(image, digest);

  it("signs and attests a digest; cosign verify and verify-attestation (spdxjson, slsaprovenance1) accept it", async () => {
    const ref = `${registry.host}/group/p/slurmd:25.11-ubuntu24.04-main-a1b2c3d4`;
    const pushed = await pushSynthetic(client, ref, "slurmd-1");
    const digest = pushed.slice(pushed.indexOf("@") + 1);
    const byDigest = `${registry.host}/group/p/slurmd@${digest}`;
    const started = Date.now();
    const signed = await signImage({ ref: byDigest, signer, verifier, predicates: predicates("slurmd", digest), paths: cosign.paths, run: cosign.run });
    expect(signed.error).toBeNull();
    expect(signed).toMatchObject({ signed: true, attested: ["spdxjson", "slsaprovenance1"], verified: true });
    expect(signed.verifiedAttestations).toEqual(["https://spdx.dev/Document", "https://slsa.dev/provenance/v1"]);
    const tags = await client.listTags(ref);
    expect(tags).toContain(cosignTags(digest).signature);
    expect(tags).toContain(cosignTags(digest).attestation);
    console.log(
      `cosign, one image: ${signed.steps.map((s) => `${s.name} ${s.ms} ms`).join(", ")}; total ${Date.now() - started} ms`,
    );
    // The verify function, by tag and by digest.
    for (const r of [ref, byDigest]) {
      const v = await verifyReference(r, verifier, cosign.paths, cosign.run);
      expect(v.errors).toEqual([]);
      expect(v.signatureDigests).toContain(digest);
      expect(v.attestations).toEqual({ spdxjson: true, slsaprovenance1: true });
    }
  });

  it("fails verification when the tag is moved to another (unsigned) digest", async () => {
    const ref = `${registry.host}/group/p/login:25.11-ubuntu24.04-main-a1b2c3d4`;
    const pushed = await pushSynthetic(client, ref, "login-1");
    const digest = pushed.slice(pushed.indexOf("@") + 1);
    const signed = await signImage({
      ref: `${registry.host}/group/p/login@${digest}`,
      signer,
      verifier,
      predicates: predicates("login", digest),
      paths: cosign.paths,
      run: cosign.run,
    });
    expect(signed.verified).toBe(true);
    expect((await verifyReference(ref, verifier, cosign.paths, cosign.run)).ok).toBe(true);
    // Tamper: the tag now points at another image nobody signed.
    const other = await pushSynthetic(client, ref, "login-tampered");
    expect(other).not.toContain(digest);
    const v = await verifyReference(ref, verifier, cosign.paths, cosign.run);
    expect(v.ok).toBe(false);
    expect(v.signatureDigests).toEqual([]);
    expect(v.attestations).toEqual({ spdxjson: false, slsaprovenance1: false });
    expect(v.errors.join("\n")).toMatch(/no signatures found|no matching signatures|no matching attestations/i);
    // The signed digest itself still verifies.
    expect((await verifyReference(`${registry.host}/group/p/login@${digest}`, verifier, cosign.paths, cosign.run)).ok).toBe(true);
  });

  it("refuses a signature made by another key", async () => {
    const ref = `${registry.host}/group/p/sackd:x`;
    const pushed = await pushSynthetic(client, ref, "sackd-1");
    const digest = pushed.slice(pushed.indexOf("@") + 1);
    const signed = await signImage({ ref: `${registry.host}/group/p/sackd@${digest}`, signer, verifier, predicates: predicates("sackd", digest), paths: cosign.paths, run: cosign.run });
    expect(signed.verified).toBe(true);
    const stranger = hostCosign({ host: registry.host, ...USER }, "another-password");
    try {
      stranger.generateKeyPair("another-password");
      const v = await verifyReference(ref, verifier, stranger.paths, stranger.run);
      expect(v.ok).toBe(false);
    } finally {
      stranger.remove();
    }
  });

  it("leaves the private key and both passwords in no cosign output and no registry file", () => {
    const output = cosign.output.join("\n");
    expect(output.length).toBeGreaterThan(0);
    const body = privateKey.split("\n").filter((l) => !l.startsWith("-----")).join("");
    for (const secret of [KEY_PASSWORD, REGISTRY_PASSWORD, body, ...privateKey.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----"))]) {
      expect(output).not.toContain(secret);
      for (const file of filesUnder(join(registry.dir, "data"))) {
        const bytes = readFileSync(file);
        expect(bytes.includes(secret), `${secret.slice(0, 12)}… in ${file}`).toBe(false);
        expect(bytes.includes(Buffer.from(secret).toString("base64")), file).toBe(false);
      }
    }
    for (const arg of cosign.calls.flatMap((c) => c.argv)) {
      expect(arg).not.toContain(KEY_PASSWORD);
      expect(arg).not.toContain(REGISTRY_PASSWORD);
    }
  });
});
