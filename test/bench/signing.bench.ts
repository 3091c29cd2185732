/**
 * `npm run bench:signing`: signing, attesting and verifying the REAL images
 * the image harness built (slinky-test/<image>:24.11-debian13 in the shared
 * engine), pushed to a loopback registry, with real cosign and the module's
 * own documents made from each image's real dpkg-query output. Prints, per
 * image: its size, the SBOM's packages and bytes, the time of each cosign
 * step and the bytes cosign stored. Figures, not assertions; never part of
 * `npm test`. Runs under the shared engine's lock (it runs containers there).
 *
 * BENCH_IMAGES: comma-separated images (default: all 8 that exist).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGE_NAMES } from "../../src/core/catalog.js";
import { createLogger } from "../../src/core/log.js";
import { RegistryClient } from "../../src/registry/client.js";
import { type PublishedImage } from "../../src/release/publish.js";
import { type Signing, signPublished } from "../../src/release/sign-published.js";
import { DPKG_QUERY } from "../../src/supply-chain/dpkg.js";
import { type Signer, signTarget, type Verifier } from "../../src/supply-chain/signing.js";
import { cosignVersion, type HostCosign, hostCosign } from "../registry/cosign.js";
import { LogCapture, type RunningRegistry, startRegistry } from "../registry/harness.js";
import type { CachedBuild } from "../../src/cache/cachedbuild.engine.js";
import { loadManifest } from "../../src/core/manifest.js";
import { documentsOf } from "../../src/release/pipeline.engine.js";
import { resolve } from "../../src/build/plan.js";
import { documentsRun, dpkgSpy } from "../registry/predicates.js";

const ENGINE = `unix://${process.env.SLINKY_ENGINE_DIR ?? "/var/tmp/slinky-engine"}/docker.sock`;
const DOCKER = "/usr/bin/docker";
const TAG = "24.11-debian13";
const USER = { username: "bench", password: `bench-canary-${Date.now().toString(36)}` };
const KEY_PASSWORD = `bench-key-${Date.now().toString(36)}`;

function docker(args: string[]): string {
  return execFileSync(DOCKER, args, { env: { ...process.env, DOCKER_HOST: ENGINE }, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, stdio: ["ignore", "pipe", "pipe"] });
}

function present(image: string): boolean {
  try {
    docker(["image", "inspect", `slinky-test/${image}:${TAG}`]);
    return true;
  } catch {
    return false;
  }
}

const wanted = (process.env.BENCH_IMAGES?.split(",") ?? [...IMAGE_NAMES]).filter((i) => present(i));

describe.skipIf(cosignVersion() === null || wanted.length === 0)("signing the harness's real images", () => {
  let registry: RunningRegistry;
  let cosign: HostCosign;
  let auth: string;
  const capture = new LogCapture();
  const log = createLogger({ destination: capture.stream, level: "info" });

  beforeAll(async () => {
    registry = await startRegistry({ kind: "htpasswd", users: [USER] });
    cosign = hostCosign({ host: registry.host, ...USER }, KEY_PASSWORD);
    cosign.generateKeyPair(KEY_PASSWORD);
    auth = mkdtempSync(join(tmpdir(), "slinky-bench-auth-"));
    writeFileSync(join(auth, "auth.json"), JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${USER.username}:${USER.password}`).toString("base64") } } }), { mode: 0o600 });
  });
  afterAll(async () => {
    await registry?.stop();
    cosign?.remove();
    if (auth) rmSync(auth, { recursive: true, force: true });
  });

  it("signs, attests and verifies each image; prints sizes and times", async () => {
    const client = new RegistryClient({ ...USER, plainHttp: true });
    const path = `${registry.host}/bench`;
    const published: PublishedImage[] = [];
    const dpkg = new Map<string, string>();
    const pushMs = new Map<string, number>();
    for (const image of wanted) {
      const started = Date.now();
      // The image as the engine holds it, copied to the loopback registry (credentials from a 0600 file, never argv).
      execFileSync("skopeo", ["copy", "--quiet", "--src-daemon-host", ENGINE, "--dest-tls-verify=false", "--authfile", join(auth, "auth.json"), `docker-daemon:slinky-test/${image}:${TAG}`, `docker://${path}/${image}:${TAG}`], {
        env: { ...process.env, DOCKER_HOST: ENGINE },
        stdio: ["ignore", "ignore", "pipe"],
      });
      pushMs.set(image, Date.now() - started);
      const head = await client.getManifest(`${path}/${image}:${TAG}`);
      published.push({ image, ok: true, digest: head.digest, mediaType: head.mediaType, sizeBytes: await client.imageSize(head), platforms: [], references: [], durationMs: 0, error: null });
      // DPKG_QUERY in the image itself, as documentsOf runs it in the engine.
      const [command, ...args] = DPKG_QUERY;
      dpkg.set(image, docker(["run", "--rm", "--network", "none", "--user", "root", "--entrypoint", command as string, `slinky-test/${image}:${TAG}`, ...args]));
    }
    const sizes = new Map<string, { packages: number; sbom: number; provenance: number }>();
    const signing: Signing = {
      describe: { mode: "key", fulcioUrl: null, rekorUrl: null, certificateIdentity: null, certificateOidcIssuer: null, publicKey: null },
      sign: (target) =>
        signTarget(target, {
          signer: { kind: "key", rekorUrl: null } satisfies Signer,
          verifier: { kind: "key", rekorUrl: null } satisfies Verifier,
          paths: cosign.paths,
          run: cosign.run,
          predicates: async (digest) => {
            const docs = await documentsFrom(dpkg.get(target.image) ?? "", path)(target.image, digest, null);
            const spdx = docs.spdxjson as { packages: unknown[] };
            sizes.set(target.image, { packages: spdx.packages.length, sbom: JSON.stringify(docs.spdxjson).length, provenance: JSON.stringify(docs.slsaprovenance1).length });
            return docs;
          },
        }),
    };
    const started = Date.now();
    const report = await signPublished(signing, path, published, client, log);
    const wall = Date.now() - started;
    const lines = [
      "| image | image size | push | packages | SBOM | provenance | sign | attest spdx | attest slsa | verify | verify-att spdx | verify-att slsa | signature | attestations |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ];
    const kb = (n: number | null | undefined) => (n === null || n === undefined ? "-" : `${(n / 1024).toFixed(1)} KB`);
    const mb = (n: number | null) => (n === null ? "-" : `${(n / 1024 / 1024).toFixed(0)} MB`);
    for (const row of report.images) {
      const d = row.digests[0];
      const ms = (name: string) => `${((d?.steps.find((s) => s.name === name)?.ms ?? 0) / 1000).toFixed(2)} s`;
      const s = sizes.get(row.image);
      lines.push(
        `| ${row.image} | ${mb(published.find((p) => p.image === row.image)?.sizeBytes ?? null)} | ${((pushMs.get(row.image) ?? 0) / 1000).toFixed(0)} s | ${s?.packages ?? "-"} | ${kb(s?.sbom)} | ${kb(s?.provenance)} | ` +
          `${ms("sign")} | ${ms("attest spdxjson")} | ${ms("attest slsaprovenance1")} | ${ms("verify")} | ${ms("verify-attestation spdxjson")} | ${ms("verify-attestation slsaprovenance1")} | ${row.signatureBytes} B | ${kb(row.attestationBytes)} |`,
      );
    }
    console.log(`${lines.join("\n")}\n\n${report.images.length} images signed, attested and verified, two at a time, in ${(wall / 1000).toFixed(1)} s (cosign ${cosignVersion()?.match(/GitVersion:\s*(\S+)/)?.[1] ?? "?"})`);
    expect(report.ok, JSON.stringify(report.images.map((r) => r.error))).toBe(true);
  });
});

/** The module's documents (pipeline.documentsOf) from one image's real dpkg-query output. */
function documentsFrom(stdout: string, registry: string) {
  const manifest = loadManifest();
  const resolved = resolve(manifest, { slurmVersion: "25.11", flavor: "debian13", group: "all", platforms: "linux/amd64" });
  const cached = { plan: null, options: null, disabled: "off", warnings: [] } as unknown as CachedBuild;
  return documentsOf({ ...documentsRun(registry), group: "all" }, resolved, cached, async () => dpkgSpy(stdout), new Date().toISOString());
}
