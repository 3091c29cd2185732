/**
 * Signing, attesting and verifying with REAL cosign (Debian trixie's 2.5
 * package, test/setup.sh) against a REAL registry (docker-registry on
 * 127.0.0.1 with basic auth), with a key pair made here under a canary
 * password. The argv is the module's (src/supply-chain/signing.ts); the runner is the
 * host's cosign (test/registry/cosign.ts) where the engine runs cosign's
 * pinned image.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/core/log.js";
import { RegistryClient } from "../../src/registry/client.js";
import { runCi } from "../../src/release/ci.js";
import { type Signing, signPublished } from "../../src/release/sign-published.js";
import { renderJson, renderMarkdown, type Report } from "../../src/release/report.js";
import { cosignTags, type Predicates, signImage, type Signer, signTarget, type Verifier, renderVerification, verifiedOrWhy, verifyAttestationArgs, verifyReference } from "../../src/supply-chain/signing.js";
import { cosignVersion, type HostCosign, hostCosign } from "../registry/cosign.js";
import { LogCapture, pushSynthetic, pushSyntheticIndex, type RunningRegistry, startRegistry } from "../registry/harness.js";
import { moduleDocuments, standInPredicates } from "../registry/predicates.js";

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

/**
 * docker-registry with USER's basic auth, and host cosign for it with a key
 * pair made under KEY_PASSWORD; if the key pair cannot be made, both are
 * stopped and removed before the error is thrown.
 */
async function registryWithKeyPair(): Promise<{ registry: RunningRegistry; cosign: HostCosign; privateKey: string }> {
  const registry = await startRegistry({ kind: "htpasswd", users: [USER] });
  let cosign: HostCosign | undefined;
  try {
    cosign = hostCosign({ host: registry.host, ...USER }, KEY_PASSWORD);
    cosign.generateKeyPair(KEY_PASSWORD);
    return { registry, cosign, privateKey: readFileSync(cosign.paths.key, "utf8") };
  } catch (error) {
    cosign?.remove();
    await registry.stop();
    throw error;
  }
}

describe.skipIf(!HAVE_COSIGN)("key-based signing with real cosign on a real registry", () => {
  let registry: RunningRegistry;
  let cosign: HostCosign;
  let client: RegistryClient;
  const signer: Signer = { kind: "key", rekorUrl: null };
  const verifier: Verifier = { kind: "key", rekorUrl: null };
  let privateKey: string;

  beforeAll(async () => {
    ({ registry, cosign, privateKey } = await registryWithKeyPair());
    client = new RegistryClient({ ...USER, plainHttp: true });
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
      expect(renderVerification(v)).toBe(
        [
          `VERIFIED ${r}`,
          `- signature: valid on ${digest}`,
          "- attestation spdxjson (https://spdx.dev/Document): valid",
          "- attestation slsaprovenance1 (https://slsa.dev/provenance/v1): valid",
        ].join("\n"),
      );
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
    expect(renderVerification(v)).toMatch(new RegExp(`^NOT VERIFIED ${ref.replace(/[.*+?^$()|[\]\\]/g, "\\$&")}\n- signature: none valid\n`));
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

const SHA_A = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const SHA_B = "b2c3d4e5f60718293a4b5c6d7e8f901234567890";
const PROD = "25.11-ubuntu24.04-latest";

describe.skipIf(!HAVE_COSIGN)("ci signs, attests and verifies every pushed digest before promotion (real cosign)", () => {
  let registry: RunningRegistry;
  let cosign: HostCosign;
  let privateKey: string;
  const capture = new LogCapture();
  const log = createLogger({ destination: capture.stream, level: "debug" });
  const reports: Report[] = [];
  const signer: Signer = { kind: "key", rekorUrl: null };
  const verifier: Verifier = { kind: "key", rekorUrl: null };
  let project = 0;

  beforeAll(async () => {
    ({ registry, cosign, privateKey } = await registryWithKeyPair());
  });
  afterAll(async () => {
    await registry?.stop();
    cosign?.remove();
  });

  const client = () => new RegistryClient({ ...USER, plainHttp: true, logger: log, minBackoffMs: 20, maxBackoffMs: 200 });
  const signing = (c: HostCosign = cosign): Signing => ({
    describe: { mode: "key", fulcioUrl: null, rekorUrl: null, certificateIdentity: null, certificateOidcIssuer: null, publicKey: readFileSync(c.paths.publicKey, "utf8") },
    sign: (target) =>
      signTarget(target, {
        signer,
        verifier,
        paths: c.paths,
        run: c.run,
        predicates: (digest, platform) => moduleDocuments(target.repository.slice(0, target.repository.lastIndexOf("/")), target.platforms.length > 0 ? ["linux/amd64", "linux/arm64"] : ["linux/amd64"])(target.image, digest, platform as never),
      }),
  });

  async function run(images: string[], branch: string, sha: string, extra: { signing?: Signing; index?: boolean; path?: string } = {}) {
    const path = extra.path ?? `${registry.host}/group/s${++project}`;
    const c = client();
    const report = await runCi({
      context: { branch, commitSha: sha, defaultBranch: "main", pipelineSource: "push", registry: path, slurmVersion: "25.11", flavor: "ubuntu24.04", group: "core" },
      images,
      check: async () => {},
      push: async (image, ref) => (extra.index ? `${ref}@${await pushSyntheticIndex(c, ref, `${image}-${sha}`)}` : pushSynthetic(c, ref, `${image}-${sha}`)),
      client: () => c,
      signing: extra.signing ?? signing(),
      concurrency: 2,
      settleMs: 20,
      log,
    });
    reports.push(report);
    return { report, path };
  }

  it("on main: signs and attests each image, verifies, then promotes; the production tag verifies", async () => {
    const started = Date.now();
    const { report, path } = await run(["slurmctld", "slurmd"], "main", SHA_A);
    expect(report.ok, renderMarkdown(report)).toBe(true);
    expect(report.promotion?.promoted).toBe(true);
    expect(report.signing?.ok).toBe(true);
    for (const row of report.signing?.images ?? []) {
      expect(row.digests).toHaveLength(1);
      expect(row.digests[0]).toMatchObject({ role: "image", signed: true, verified: true, attested: ["spdxjson", "slsaprovenance1"] });
      expect(row.digests[0]?.digest).toBe(report.images.find((i) => i.image === row.image)?.digest);
      expect(row.signatureBytes).toBeGreaterThan(100);
      expect(row.attestationBytes).toBeGreaterThan(row.signatureBytes ?? 0);
      console.log(
        `${row.image}: signed+attested+verified in ${row.ms} ms (${row.digests[0]?.steps.map((s) => `${s.name} ${s.ms} ms`).join(", ")}); ` +
          `signature ${row.signatureBytes} B, attestations ${row.attestationBytes} B`,
      );
    }
    console.log(`ci run of 2 images with signing: ${Date.now() - started} ms`);
    const md = renderMarkdown(report);
    expect(md).toContain("## Signing");
    expect(md).toContain("Signed, attested and verified: key-based, transparency log off.");
    expect(md).toContain(readFileSync(cosign.paths.publicKey, "utf8").trim());
    for (const image of ["slurmctld", "slurmd"]) {
      const v = await verifyReference(`${path}/${image}:${PROD}`, verifier, cosign.paths, cosign.run);
      expect(v.errors).toEqual([]);
      expect(v.signatureDigests).toEqual([report.images.find((i) => i.image === image)?.digest]);
    }
    // What a verifier reads out of the verified attestations: the module's own SBOM and provenance.
    const digest = report.images[0]?.digest as string;
    const statements = async (type: "spdxjson" | "slsaprovenance1") =>
      (await cosign.run({ name: "read", argv: verifyAttestationArgs(`${path}/slurmctld:${PROD}`, type, verifier, cosign.paths), files: {} }))
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(Buffer.from((JSON.parse(l) as { payload: string }).payload, "base64").toString("utf8")) as { subject: { digest: { sha256: string } }[]; predicate: Record<string, any> });
    const [sbom] = await statements("spdxjson");
    expect(sbom?.subject[0]?.digest.sha256).toBe(digest.slice(7));
    expect(sbom?.predicate.spdxVersion).toBe("SPDX-2.3");
    expect(sbom?.predicate.packages.length).toBeGreaterThan(100);
    expect(JSON.stringify(sbom?.predicate)).toContain(digest);
    const [provenance] = await statements("slsaprovenance1");
    expect(provenance?.predicate.buildDefinition.externalParameters).toMatchObject({ image: "slurmctld", platform: "linux/amd64", flavor: "debian13" });
    expect(provenance?.predicate.buildDefinition.resolvedDependencies.length).toBeGreaterThan(2);
  });

  it("a second commit promoted over the first: the production tag verifies on the new digest", async () => {
    const path = `${registry.host}/group/s-two`;
    await run(["login"], "main", SHA_A, { path });
    const { report } = await run(["login"], "main", SHA_B, { path });
    expect(report.ok).toBe(true);
    expect(report.promotion?.moved).toHaveLength(1);
    const v = await verifyReference(`${path}/login:${PROD}`, verifier, cosign.paths, cosign.run);
    expect(v.ok).toBe(true);
    expect(v.signatureDigests).toEqual([report.images[0]?.digest]);
  });

  it("an image index: the index is signed recursively, each platform attested with its own documents, all verified", async () => {
    const { report, path } = await run(["slurmd"], "feature/multi", SHA_A, { index: true });
    expect(report.ok, renderMarkdown(report)).toBe(true);
    const row = report.signing?.images[0];
    expect(row?.digests.map((d) => d.role)).toEqual(["index", "linux/amd64", "linux/arm64"]);
    expect(row?.digests.every((d) => d.verified)).toBe(true);
    for (const p of report.images[0]?.platforms ?? []) {
      expect((await verifyReference(`${path}/slurmd@${p.digest}`, verifier, cosign.paths, cosign.run)).ok).toBe(true);
    }
  });

  it("when signing fails (wrong key password), nothing is promoted and the report says which image and why", async () => {
    const path = `${registry.host}/group/s-fail`;
    const first = await run(["sackd", "login"], "main", SHA_A, { path });
    expect(first.report.promotion?.promoted).toBe(true);
    const broken = hostCosign({ host: registry.host, ...USER }, "not-the-key-password");
    try {
      // The same key, the wrong password: cosign cannot decrypt it.
      broken.generateKeyPair("throwaway");
      const { writeFileSync } = await import("node:fs");
      writeFileSync(broken.paths.key, privateKey, { mode: 0o600 });
      writeFileSync(broken.paths.publicKey, readFileSync(cosign.paths.publicKey));
      const { report } = await run(["sackd", "login"], "main", SHA_B, { path, signing: signing(broken) });
      expect(report.ok).toBe(false);
      expect(report.signing?.ok).toBe(false);
      expect(report.promotion).toMatchObject({ promoted: false, outcome: "refused", moved: [] });
      expect(report.summary).toMatch(/failed signing or verification \(sackd, login\): not promoted, no production tag moved/);
      for (const i of report.images) expect(i.error).toMatch(/^signing failed: image sha256:[0-9a-f]{64}: sign \S+@sha256:[0-9a-f]{64}: cosign sign failed: .*decrypt/);
      expect(renderMarkdown(report)).toMatch(/NOT verified[\s\S]*Signing failures:/);
      const observer = new RegistryClient({ ...USER, plainHttp: true });
      for (const image of ["sackd", "login"]) {
        const prod = await observer.headManifest(`${path}/${image}:${PROD}`);
        expect(prod?.digest).toBe(first.report.images.find((i) => i.image === image)?.digest);
      }
    } finally {
      broken.remove();
    }
  });

  it("promote alone, with a verifier: refuses a commit whose images are not signed, promotes once they are", async () => {
    const path = `${registry.host}/group/s-promote`;
    const images = ["slurmctld", "login"];
    const c = client();
    const context = { branch: "main", commitSha: SHA_B, defaultBranch: "main", pipelineSource: "push", registry: path, slurmVersion: "25.11", flavor: "ubuntu24.04", group: "core" };
    const verify = verifiedOrWhy(verifier, cosign.paths, cosign.run);
    // As `promote` runs: the commit tag's digest adopted, no push, no branch tag moved.
    const promoteAlone = () =>
      runCi({ context, images, push: async (_image, ref) => `${ref}@${(await c.getManifest(ref)).digest}`, client: () => c, moveBranchLatest: false, verify, settleMs: 20, log });
    // Published by a run that did not sign (publish without --signing).
    const unsigned = await runCi({ context, images, push: (image, ref) => pushSynthetic(c, ref, `${image}-promote`), client: () => c, promote: false, log });
    expect(unsigned.ok).toBe(true);
    const refused = await promoteAlone();
    reports.push(refused);
    expect(refused.ok).toBe(false);
    expect(refused.promotion).toMatchObject({ promoted: false, outcome: "refused", moved: [] });
    for (const f of refused.promotion?.failed ?? []) expect(f.error).toMatch(/is not signed and attested as required: verify: .*no signatures found/);
    for (const image of images) expect(await c.headManifest(`${path}/${image}:${PROD}`)).toBeNull();
    // Signed and attested afterwards (the digests do not change): now it promotes.
    const signed = await signPublished(signing(), path, unsigned.images.map((i) => ({ ...i, ok: true, durationMs: 0 })), c, log);
    expect(signed.ok).toBe(true);
    const promoted = await promoteAlone();
    reports.push(promoted);
    expect(promoted.ok, renderMarkdown(promoted)).toBe(true);
    expect(promoted.promotion?.moved.map((m) => m.to)).toEqual(unsigned.images.map((i) => i.digest));
  });

  it("an image that fails to publish: nothing is signed, nothing promoted", async () => {
    const c = client();
    const report = await runCi({
      context: { branch: "main", commitSha: SHA_A, defaultBranch: "main", pipelineSource: "push", registry: `${registry.host}/group/s-nopush`, slurmVersion: "25.11", flavor: "ubuntu24.04", group: "core" },
      images: ["slurmctld", "slurmd"],
      push: async (image, ref) => {
        if (image === "slurmd") throw new Error("push refused");
        return pushSynthetic(c, ref, image);
      },
      client: () => c,
      signing: signing(),
      settleMs: 20,
      log,
    });
    expect(report.ok).toBe(false);
    expect(report.signing).toMatchObject({ ok: false, images: [], skipped: "slurmd failed to publish: nothing signed" });
    expect(report.promotion?.promoted).toBe(false);
    expect(cosign.calls.filter((call) => call.argv.some((a) => a.includes("s-nopush")))).toEqual([]);
  });

  it("no log line, report, cosign output or registry file holds the private key or either password", () => {
    expect(reports.length).toBeGreaterThan(3);
    const texts = [capture.text(), cosign.output.join("\n"), ...reports.flatMap((r) => [renderJson(r), renderMarkdown(r)])];
    const keyLines = privateKey.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----"));
    const secretsToFind = [KEY_PASSWORD, REGISTRY_PASSWORD, Buffer.from(`${USER.username}:${REGISTRY_PASSWORD}`).toString("base64"), ...keyLines];
    const files = filesUnder(join(registry.dir, "data"));
    expect(files.filter((f) => f.includes("/blobs/")).length).toBeGreaterThan(20);
    for (const secret of secretsToFind) {
      for (const text of texts) expect(text.includes(secret)).toBe(false);
      for (const file of files) expect(readFileSync(file).includes(secret), file).toBe(false);
    }
  });
});

/**
 * A STAND-IN Fulcio on loopback (the public Fulcio and Rekor cannot be
 * reached here): it records every request and refuses to issue a
 * certificate, as a Fulcio does for a token it does not accept.
 */
async function startStandInFulcio(): Promise<{ url: string; requests: { method: string; path: string; authorization: string; body: string }[]; stop: () => Promise<void> }> {
  const { createServer } = await import("node:http");
  const requests: { method: string; path: string; authorization: string; body: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push({ method: req.method ?? "", path: req.url ?? "", authorization: req.headers.authorization ?? "", body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(403, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: 7, message: "STAND-IN Fulcio: the OIDC token is not accepted" }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, requests, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** An unsigned JWT shaped like a GitLab job's id_token (cosign reads its claims before asking Fulcio). */
function standInIdToken(canary: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  return [
    part({ alg: "RS256", typ: "JWT", kid: "stand-in" }),
    part({ iss: "https://gitlab.example.com", sub: "project_path:group/p:ref_type:branch:ref:main", aud: "sigstore", exp: now + 600, iat: now, nbf: now, canary }),
    Buffer.from(`${canary}-signature`).toString("base64url"),
  ].join(".");
}

describe.skipIf(!HAVE_COSIGN)("keyless signing against a STAND-IN Fulcio (real cosign)", () => {
  let registry: RunningRegistry;
  let cosign: HostCosign;
  let fulcio: Awaited<ReturnType<typeof startStandInFulcio>>;
  const TOKEN_CANARY = `token-canary-${Date.now().toString(36)}`;
  const token = standInIdToken(TOKEN_CANARY);
  const capture = new LogCapture();
  const log = createLogger({ destination: capture.stream, level: "debug" });

  beforeAll(async () => {
    registry = await startRegistry({ kind: "htpasswd", users: [USER] });
    fulcio = await startStandInFulcio();
    cosign = hostCosign({ host: registry.host, ...USER });
    cosign.setToken(token);
  });
  afterAll(async () => {
    await fulcio?.stop();
    await registry?.stop();
    cosign?.remove();
  });

  it("sends the token from its secret file to the Fulcio given; Fulcio refuses: the run fails cleanly, nothing promoted, the token nowhere", async () => {
    const path = `${registry.host}/group/keyless`;
    const c = new RegistryClient({ ...USER, plainHttp: true, logger: log, minBackoffMs: 20, maxBackoffMs: 200 });
    // A production tag from an earlier (unsigned) run, which must stay where it is.
    const earlier = await pushSynthetic(c, `${path}/slurmd:${PROD}`, "earlier");
    // Rekor: a closed loopback port (never reached: Fulcio refuses first).
    const signer: Signer = { kind: "keyless", fulcioUrl: fulcio.url, rekorUrl: "http://127.0.0.1:9" };
    const verifier: Verifier = { kind: "keyless", rekorUrl: "http://127.0.0.1:9", certificateIdentity: "https://gitlab.example.com/group/p//.gitlab-ci.yml@refs/heads/main", certificateOidcIssuer: "https://gitlab.example.com" };
    const report = await runCi({
      context: { branch: "main", commitSha: SHA_A, defaultBranch: "main", pipelineSource: "push", registry: path, slurmVersion: "25.11", flavor: "ubuntu24.04", group: "core" },
      images: ["slurmd"],
      push: (image, ref) => pushSynthetic(c, ref, `${image}-keyless`),
      client: () => c,
      signing: {
        describe: { mode: "keyless", fulcioUrl: fulcio.url, rekorUrl: signer.rekorUrl, certificateIdentity: verifier.kind === "keyless" ? verifier.certificateIdentity : null, certificateOidcIssuer: "https://gitlab.example.com", publicKey: null },
        sign: (target) => signTarget(target, { signer, verifier, paths: cosign.paths, run: cosign.run, predicates: (digest) => standInPredicates(target.image, digest) }),
      },
      settleMs: 20,
      log,
    });
    // The token went to the Fulcio given, as the job's credential, read from its file.
    expect(fulcio.requests.length).toBeGreaterThan(0);
    const sent = fulcio.requests.map((r) => `${r.authorization} ${r.body}`).join("\n");
    expect(sent).toContain(token);
    console.log(`STAND-IN Fulcio saw: ${fulcio.requests.map((r) => `${r.method} ${r.path} (token in ${r.authorization.includes(token) ? "Authorization header" : "body"})`).join(", ")}`);
    for (const call of cosign.calls) {
      expect(call.argv).toContain(`--identity-token=${cosign.paths.token}`);
      expect(call.argv.join(" ")).not.toContain(TOKEN_CANARY);
    }
    // The run failed cleanly: nothing promoted, the production tag where it was.
    expect(report.ok).toBe(false);
    expect(report.signing?.images[0]).toMatchObject({ ok: false });
    expect(report.signing?.images[0]?.digests[0]).toMatchObject({ signed: false, attested: [], verified: false });
    expect(report.promotion).toMatchObject({ promoted: false, outcome: "refused", moved: [] });
    expect((await new RegistryClient({ ...USER, plainHttp: true }).headManifest(`${path}/slurmd:${PROD}`))?.digest).toBe(earlier.slice(earlier.indexOf("@") + 1));
    const md = renderMarkdown(report);
    expect(md).toMatch(/NOT verified: keyless \(Fulcio `http:\/\/127\.0\.0\.1:\d+`/);
    expect(md).toMatch(/slurmd: image sha256:[0-9a-f]{64}: sign .*cosign sign failed/);
    // The token is in no log line, report or cosign output.
    for (const text of [capture.text(), cosign.output.join("\n"), renderJson(report), md]) {
      expect(text).not.toContain(TOKEN_CANARY);
      expect(text).not.toContain(token.split(".")[1]);
    }
  });
});
