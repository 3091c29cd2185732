/**
 * What the engine tests stand on, client mode and module mode alike: the
 * harness's dockerd (for the debootstrapped base and the cosign image), the
 * Dagger engine in its namespaces, the registry docker.io's mirror points at,
 * the HTTPS registry `ci` pushes to (basic auth, the password a canary), a
 * cosign key pair (its password a canary too), and the STAND-IN inputs served
 * on this machine's end of the engine's veth pair, named by a site manifest.
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { deepMerge } from "../../src/core/manifest.js";
import { BASE_IMAGE, DOCKER, dockerEnv, ENGINE_DIR, ensureBase, type FileServer, INPUTS_DIR, run, serveFiles, SLURM_SOURCE, slurmSource, startEngine, stopEngine, type Engine } from "../images/harness.js";
import { FLAVOR } from "../images/runner.js";
import { standInSources } from "../images/serve-standins.js";
import { type RunningRegistry, startRegistry } from "../registry/harness.js";
import { TLS_DIR } from "./global-setup.js";
import { DAGGER_DIR, HOST_ADDR, REGISTRY_PORT, sdkMirrorImages, startDaggerEngine, stopDaggerEngine } from "./dagger.js";

export const MINUTE = 60_000;
export const LINE = SLURM_SOURCE.line;
/** The base as a site names it; the engine's registry mirror serves docker.io from the test's registry. */
export const BASE_REF = "docker.io/library/debian:trixie";
/** The registry ci pushes to, and its user. */
export const TARGET_PORT = REGISTRY_PORT + 1;
export const USER = "slinky-ci";
export const engineOptions = {
  registryMirror: `${HOST_ADDR}:${REGISTRY_PORT}`,
  tlsRegistry: { host: `${HOST_ADDR}:${TARGET_PORT}`, ca: join(TLS_DIR, "ca.pem") },
};
const COSIGN_LOCAL = "slinky-test/cosign:engine";

export interface Fixture {
  work: string;
  siteManifest: string;
  baseDigest: string;
  engineStartSeconds: number;
  /** The push registry's host:port, password and the signing key's password (canaries, in no output). */
  target: string;
  canary: string;
  keyCanary: string;
  stop(): Promise<void>;
}

/** Copies an image of the harness's dockerd to `ref` (the plain-HTTP mirror registry); its registry digest. */
async function pushLocal(local: string, ref: string): Promise<string> {
  const copy = await run(
    "skopeo",
    ["copy", "--quiet", "--src-daemon-host", `unix://${ENGINE_DIR}/docker.sock`, "--dest-tls-verify=false", `docker-daemon:${local}`, `docker://${ref}`],
    { timeoutMs: 5 * MINUTE },
  );
  expect(copy.code, copy.stderr).toBe(0);
  return digestOf(ref);
}

async function digestOf(ref: string): Promise<string> {
  const digest = (await run("skopeo", ["inspect", "--tls-verify=false", "--format", "{{.Digest}}", `docker://${ref}`], { timeoutMs: MINUTE })).stdout.trim();
  expect(digest, `digest of ${ref}`).toMatch(/^sha256:[0-9a-f]{64}$/);
  return digest;
}

export const seconds = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
  const started = Date.now();
  const value = await fn();
  return [value, Number(((Date.now() - started) / 1000).toFixed(1))];
};

/** Starts everything the engine tests need; `stop` takes it all down, by pid, whatever failed. */
export async function setUp(): Promise<Fixture> {
  const canary = `canary-${randomBytes(9).toString("hex")}`;
  const keyCanary = `keycanary-${randomBytes(9).toString("hex")}`;
  const work = mkdtempSync(join(DAGGER_DIR, "test-"));
  let dockerd: Engine | undefined;
  let registry: RunningRegistry | undefined;
  let target: RunningRegistry | undefined;
  let files: FileServer | undefined;
  const stop = async () => {
    const errors: unknown[] = [];
    for (const step of [stopDaggerEngine, () => files?.close(), () => registry?.stop(), () => target?.stop(), () => (dockerd ? stopEngine(dockerd) : undefined)]) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    rmSync(work, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, "engine test cleanup failed");
  };
  try {
    // The base: the harness's debootstrapped trixie, pushed as docker.io/library/debian:trixie.
    dockerd = await startEngine();
    await ensureBase(BASE_IMAGE);
    // The engine first: its start makes the veth pair whose address the servers listen on.
    const [, engineStartSeconds] = await seconds(() => startDaggerEngine(engineOptions));
    registry = await startRegistry({ kind: "none" }, { host: HOST_ADDR, port: REGISTRY_PORT });
    target = await startRegistry(
      { kind: "htpasswd", users: [{ username: USER, password: canary }] },
      { host: HOST_ADDR, port: TARGET_PORT, tls: { certFile: join(TLS_DIR, "registry.pem"), keyFile: join(TLS_DIR, "registry.key") } },
    );
    const baseDigest = await pushLocal(BASE_IMAGE, `${registry.host}/library/debian:trixie`);
    // Module mode on an engine built from source: the base images its TypeScript runtime pulls (given, see dagger.ts).
    for (const image of sdkMirrorImages()) {
      const copy = await run("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${image.layout}`, `docker://${registry.host}/${image.ref}`], { timeoutMs: 5 * MINUTE });
      expect(copy.code, copy.stderr).toBe(0);
    }
    // Signing: a cosign image made here (Debian's cosign 2.5 and the test CA), a key pair made now.
    const context = join(work, "cosign");
    mkdirSync(context);
    copyFileSync((await run("sh", ["-c", "command -v cosign"], { timeoutMs: 10_000 })).stdout.trim(), join(context, "cosign"));
    copyFileSync(join(TLS_DIR, "ca.pem"), join(context, "ca.pem"));
    copyFileSync(join(import.meta.dirname, "cosign", "Dockerfile"), join(context, "Dockerfile"));
    await run(DOCKER, ["build", "--network", "host", "--build-arg", `BASE_IMAGE=${BASE_IMAGE}`, "-t", COSIGN_LOCAL, context], { timeoutMs: 10 * MINUTE, env: dockerEnv });
    const cosignDigest = await pushLocal(COSIGN_LOCAL, `${registry.host}/slinky-test/cosign:v2.5`);
    const keys = await run("cosign", ["generate-key-pair"], { timeoutMs: MINUTE, cwd: work, env: { ...process.env, COSIGN_PASSWORD: keyCanary } });
    expect(keys.code, keys.stderr).toBe(0);
    expect(readdirSync(work)).toEqual(expect.arrayContaining(["cosign.key", "cosign.pub"]));
    // The inputs on the veth address, where the engine's build containers reach them.
    const slurmPath = await slurmSource();
    const served = await standInSources(join(INPUTS_DIR, "standins"));
    // A fixed port: the inputs' URLs are build arguments, so a new port each run would rebuild everything.
    files = await serveFiles({ [SLURM_SOURCE.file]: slurmPath, ...served.files }, REGISTRY_PORT + 2, HOST_ADDR);
    const site = deepMerge(served.override(files), {
      slurm: { [LINE]: { version: SLURM_SOURCE.version, url: files.url(SLURM_SOURCE.file), sha256: SLURM_SOURCE.sha256, checksumSource: "STAND-IN: the image harness's Slurm source" } },
      flavors: { [FLAVOR]: { baseImage: BASE_REF, baseDigest, digestSource: "STAND-IN: the debootstrapped base in the test's registry" } },
      cosign: { version: "2.5", image: `${registry.host}/slinky-test/cosign:v2.5`, digest: cosignDigest, digestSource: "STAND-IN image: Debian's cosign 2.5 made by the test" },
    });
    const siteManifest = join(work, "site-manifest.json");
    writeFileSync(siteManifest, `${JSON.stringify(site, null, 2)}\n`);
    return { work, siteManifest, baseDigest, engineStartSeconds, target: target.host, canary, keyCanary, stop };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

/** The tags a repository of the push registry holds, read with skopeo (HTTPS, the canary's credentials). */
export async function tagsOf(fixture: Fixture, image: string): Promise<string[]> {
  const r = await run(
    "skopeo",
    ["list-tags", "--cert-dir", join(TLS_DIR, "skopeo"), "--creds", `${USER}:${fixture.canary}`, `docker://${fixture.target}/slinky/${image}`],
    { timeoutMs: MINUTE },
  );
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { Tags: string[] }).Tags;
}

export { FLAVOR };
