/**
 * The module's functions through a real Dagger engine (test/engine/engine.sh),
 * in client mode: the TypeScript SDK connects to the engine through the Dagger
 * CLI, and the test calls SlinkyContainers as `dagger call` would, with the
 * repository's dockerfiles/ and a site manifest given as the engine's Directory
 * and File. The inputs are the image harness's: the debootstrapped debian13
 * base (pushed to a registry of the test that docker.io's mirror points at) and
 * the STAND-INs of test/images/standins.ts with the Slurm 24.11.5 source, served
 * on this machine's end of the engine's veth pair. Nothing reaches Docker Hub.
 *
 * Where the engine cannot be built here (build-dagger.sh records the Go module
 * proxy's refusal), every test is skipped under a name that says why.
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connection, dag } from "@dagger.io/dagger";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGES } from "../../src/core/catalog.js";
import { SlinkyContainers } from "../../src/index.js";
import { deepMerge, loadManifest } from "../../src/core/manifest.js";
import { imageLabels, resolve } from "../../src/build/plan.js";
import { BASE_IMAGE, DOCKER, dockerEnv, ENGINE_DIR, ensureBase, type FileServer, INPUTS_DIR, REPO, run, serveFiles, SLURM_SOURCE, slurmSource, startEngine, stopEngine, type Engine } from "../images/harness.js";
import { FLAVOR } from "../images/runner.js";
import { standInSources } from "../images/serve-standins.js";
import { type RunningRegistry, startRegistry } from "../registry/harness.js";
import type { Report } from "../../src/release/report.js";
import { TLS_DIR } from "./global-setup.js";
import { clientEnv, DAGGER_DIR, daggerVersion, engineUnavailable, HOST_ADDR, REGISTRY_PORT, startDaggerEngine, stopDaggerEngine } from "./dagger.js";

const MINUTE = 60_000;
const unavailable = engineUnavailable();
const OUT = join(REPO, "out");
const LINE = SLURM_SOURCE.line;
/** The base as a site names it; the engine's registry mirror serves docker.io from the test's registry. */
const BASE_REF = "docker.io/library/debian:trixie";

const report = {
  dagger: "",
  engineStartSeconds: 0,
  base: { ref: BASE_REF, digest: "" },
  planSeconds: 0,
  buildAllSeconds: 0,
  buildAll: "",
  buildSlurmd: { seconds: 0, exportBytes: 0, labels: {} as Record<string, string> },
  testSeconds: 0,
  test: "",
  ci: { seconds: 0, summary: "", pushed: 0, cacheWritten: 0, signing: "" },
  ciFreshEngine: { engineStartSeconds: 0, seconds: 0, summary: "", packageSetReused: false, imagesReused: 0 },
};

/** The registry ci pushes to, its user and password (a canary that must appear in no output). */
const TARGET_PORT = REGISTRY_PORT + 1;
const USER = "slinky-ci";
const CANARY = `canary-${randomBytes(9).toString("hex")}`;
/** The signing key's password, a canary too. */
const KEY_CANARY = `keycanary-${randomBytes(9).toString("hex")}`;
const COSIGN_LOCAL = "slinky-test/cosign:engine";
const COMMIT = "9f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c";
const COMMIT_2 = "5e6f708192a3b4c5d6e7f8091a2b3c9f1c2b3a4d";
const engineOptions = {
  registryMirror: `${HOST_ADDR}:${REGISTRY_PORT}`,
  tlsRegistry: { host: `${HOST_ADDR}:${TARGET_PORT}`, ca: join(TLS_DIR, "ca.pem") },
};

let dockerd: Engine | undefined;
let registry: RunningRegistry | undefined;
let target: RunningRegistry | undefined;
let files: FileServer | undefined;
let work = "";
let siteManifest = "";

/** One SDK session against the engine, as one `dagger call` is. */
function call<T>(body: (module: SlinkyContainers) => Promise<T>): Promise<T> {
  let result: T;
  return connection(async () => {
    const module = new SlinkyContainers(dag.host().directory(join(REPO, "dockerfiles")), dag.host().file(siteManifest));
    result = await body(module);
  }).then(() => result);
}

/** Copies an image of the harness's dockerd to `ref` (the plain-HTTP mirror registry); its registry digest. */
async function pushLocal(local: string, ref: string): Promise<string> {
  const copy = await run(
    "skopeo",
    ["copy", "--quiet", "--src-daemon-host", `unix://${ENGINE_DIR}/docker.sock`, "--dest-tls-verify=false", `docker-daemon:${local}`, `docker://${ref}`],
    { timeoutMs: 5 * MINUTE },
  );
  expect(copy.code, copy.stderr).toBe(0);
  const digest = (await run("skopeo", ["inspect", "--tls-verify=false", "--format", "{{.Digest}}", `docker://${ref}`], { timeoutMs: MINUTE })).stdout.trim();
  expect(digest, `digest of ${ref}`).toMatch(/^sha256:[0-9a-f]{64}$/);
  return digest;
}

const seconds = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
  const started = Date.now();
  const value = await fn();
  return [value, Number(((Date.now() - started) / 1000).toFixed(1))];
};

describe.skipIf(unavailable !== undefined)(
  `through a real Dagger engine${unavailable ? ` (not run here: ${unavailable.split("\n").join("; ")})` : ""}`,
  () => {
    beforeAll(async () => {
      Object.assign(process.env, clientEnv());
      report.dagger = await daggerVersion();
      work = mkdtempSync(join(DAGGER_DIR, "test-"));
      // The base: the harness's debootstrapped trixie, pushed as docker.io/library/debian:trixie.
      dockerd = await startEngine();
      await ensureBase(BASE_IMAGE);
      // The engine first: its start makes the veth pair whose address the servers listen on.
      [, report.engineStartSeconds] = await seconds(() => startDaggerEngine(engineOptions));
      registry = await startRegistry({ kind: "none" }, { host: HOST_ADDR, port: REGISTRY_PORT });
      // Where ci pushes: HTTPS with basic auth, the password a canary.
      target = await startRegistry(
        { kind: "htpasswd", users: [{ username: USER, password: CANARY }] },
        { host: HOST_ADDR, port: TARGET_PORT, tls: { certFile: join(TLS_DIR, "registry.pem"), keyFile: join(TLS_DIR, "registry.key") } },
      );
      report.base.digest = await pushLocal(BASE_IMAGE, `${registry.host}/library/debian:trixie`);
      // Signing: a cosign image made here (Debian's cosign 2.5 and the test CA), a key pair made now.
      const context = join(work, "cosign");
      mkdirSync(context);
      copyFileSync((await run("sh", ["-c", "command -v cosign"], { timeoutMs: 10_000 })).stdout.trim(), join(context, "cosign"));
      copyFileSync(join(TLS_DIR, "ca.pem"), join(context, "ca.pem"));
      copyFileSync(join(import.meta.dirname, "cosign", "Dockerfile"), join(context, "Dockerfile"));
      await run(DOCKER, ["build", "--network", "host", "--build-arg", `BASE_IMAGE=${BASE_IMAGE}`, "-t", COSIGN_LOCAL, context], { timeoutMs: 10 * MINUTE, env: dockerEnv });
      const cosignDigest = await pushLocal(COSIGN_LOCAL, `${registry.host}/slinky-test/cosign:v2.5`);
      const keys = await run("cosign", ["generate-key-pair"], { timeoutMs: MINUTE, cwd: work, env: { ...process.env, COSIGN_PASSWORD: KEY_CANARY } });
      expect(keys.code, keys.stderr).toBe(0);
      // The inputs on the veth address, where the engine's build containers reach them.
      const slurmPath = await slurmSource();
      const served = await standInSources(join(INPUTS_DIR, "standins"));
      // A fixed port: the inputs' URLs are build arguments, so a new port each run would rebuild everything.
      files = await serveFiles({ [SLURM_SOURCE.file]: slurmPath, ...served.files }, REGISTRY_PORT + 2, HOST_ADDR);
      const site = deepMerge(served.override(files), {
        slurm: { [LINE]: { version: SLURM_SOURCE.version, url: files.url(SLURM_SOURCE.file), sha256: SLURM_SOURCE.sha256, checksumSource: "STAND-IN: the image harness's Slurm source" } },
        flavors: { [FLAVOR]: { baseImage: BASE_REF, baseDigest: report.base.digest, digestSource: "STAND-IN: the debootstrapped base in the test's registry" } },
        cosign: { version: "2.5", image: `${registry.host}/slinky-test/cosign:v2.5`, digest: cosignDigest, digestSource: "STAND-IN image: Debian's cosign 2.5 made by the test" },
      });
      siteManifest = join(work, "site-manifest.json");
      writeFileSync(siteManifest, `${JSON.stringify(site, null, 2)}\n`);
    }, 30 * MINUTE);

    afterAll(async () => {
      const errors: unknown[] = [];
      for (const step of [stopDaggerEngine, () => files?.close(), () => registry?.stop(), () => target?.stop(), () => (dockerd ? stopEngine(dockerd) : undefined)]) {
        try {
          await step();
        } catch (error) {
          errors.push(error);
        }
      }
      if (work) rmSync(work, { recursive: true, force: true });
      mkdirSync(OUT, { recursive: true });
      writeFileSync(join(OUT, "engine-report.json"), `${JSON.stringify(report, null, 2)}\n`);
      console.log(`[engine] ${JSON.stringify(report)}`);
      if (errors.length > 0) throw new AggregateError(errors, "engine test cleanup failed");
    }, 5 * MINUTE);

    it("plan: the engine reads the site manifest File and returns the run's JSON", async () => {
      const sha = "0123456789abcdef0123456789abcdef01234567";
      const [text, took] = await seconds(() => call((m) => m.plan(LINE, FLAVOR, "all", "feature/x", sha, "registry.example.com/g/p")));
      report.planSeconds = took;
      const document = JSON.parse(text) as { slurm: { version: string }; flavor: { baseImage: string }; images: { name: string; references: string[] }[] };
      // The site manifest's line and base pin, read by the engine from the File.
      expect(document.slurm.version).toBe(SLURM_SOURCE.version);
      expect(document.flavor.baseImage).toBe(`${BASE_REF}@${report.base.digest}`);
      expect(document.images.map((i) => i.name).sort()).toEqual(IMAGES.map((i) => i.name).sort());
      expect(document.images.find((i) => i.name === "slurmd")?.references).toEqual([
        `registry.example.com/g/p/slurmd:${LINE}-${FLAVOR}-feature-x-01234567`,
        `registry.example.com/g/p/slurmd:${LINE}-${FLAVOR}-feature-x-latest`,
      ]);
    });

    it(
      "build-all: the 8 images, built concurrently by the engine from one package set",
      async () => {
        const [text, took] = await seconds(() => call((m) => m.buildAll("all", LINE, FLAVOR)));
        report.buildAllSeconds = took;
        report.buildAll = text;
        const lines = text.split("\n");
        expect(lines[0]).toMatch(/^build cache: not used/);
        for (const image of IMAGES) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${image.name}: built in [0-9.]+s$`)));
      },
      60 * MINUTE,
    );

    it(
      "build --image slurmd: a Container with the recipe's entrypoint, user, ports and labels, exported as a tarball",
      async () => {
        const manifest = loadManifest(JSON.parse(readFileSync(siteManifest, "utf8")));
        const resolved = resolve(manifest, { slurmVersion: LINE, flavor: FLAVOR, group: "all" });
        const slurmd = IMAGES.find((i) => i.name === "slurmd")!;
        const tarball = join(work, "slurmd.tar");
        const [got, took] = await seconds(() =>
          call(async (m) => {
            const c = await m.build("slurmd", LINE, FLAVOR);
            await c.export(tarball);
            const labels = Object.fromEntries(await Promise.all((await c.labels()).map(async (l) => [await l.name(), await l.value()] as const)));
            return {
              entrypoint: await c.entrypoint(),
              user: await c.user(),
              ports: await Promise.all((await c.exposedPorts()).map(async (p) => `${await p.port()}/${(await p.protocol()).toLowerCase()}`)),
              version: (await c.withExec(["slurmd", "-V"]).stdout()).trim(),
              labels,
            };
          }),
        );
        report.buildSlurmd = { seconds: took, exportBytes: statSync(tarball).size, labels: got.labels };
        expect(got.entrypoint).toEqual(["/usr/local/bin/entrypoint.sh"]);
        expect(got.user).toBe("");
        expect(got.ports.sort()).toEqual(["22/tcp", "6818/tcp"]);
        expect(got.version).toBe(`slurm ${SLURM_SOURCE.version}`);
        // The labels the docker harness sets from the same plan (its revision and created aside).
        const expected = imageLabels(manifest, resolved, slurmd, {});
        for (const [key, value] of Object.entries(expected)) expect(got.labels[key], key).toBe(value);
        expect(report.buildSlurmd.exportBytes).toBeGreaterThan(50_000_000);
      },
      30 * MINUTE,
    );

    it(
      "test: every image's smoke checks run by the engine",
      async () => {
        const [text, took] = await seconds(() => call((m) => m.test("all", LINE, FLAVOR)));
        report.testSeconds = took;
        report.test = text;
        for (const image of IMAGES) expect(text.split("\n")).toContainEqual(expect.stringMatching(new RegExp(`^${image.name}: smoke checks passed in`)));
      },
      30 * MINUTE,
    );

    /** ci as the GitLab job calls it (ci/dagger-ci.sh), its report directory exported and read. */
    async function ci(commit: string): Promise<Report> {
      const out = join(work, `ci-${commit.slice(0, 8)}`);
      await call(async (m) => {
        const key = dag.setSecret("cosign-key", readFileSync(join(work, "cosign.key"), "utf8"));
        const password = dag.setSecret("cosign-password", KEY_CANARY);
        const dir = await m.ci(
          "main", commit, "main", "push", `${target!.host}/slinky`, USER, dag.setSecret("registry-password", CANARY), LINE, FLAVOR, "all",
          "2026-12-01T12:00:00Z", "on", undefined, 7, undefined, "key", key, password,
        );
        await dir.export(out);
      });
      expect(readdirSync(out).sort()).toEqual(["cosign.pub", "report.json", "report.md", "status"]);
      const text = readFileSync(join(out, "report.json"), "utf8") + readFileSync(join(out, "report.md"), "utf8");
      for (const canary of [CANARY, KEY_CANARY]) expect(text).not.toContain(canary);
      expect(readFileSync(join(out, "cosign.pub"), "utf8")).toBe(readFileSync(join(work, "cosign.pub"), "utf8"));
      return JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
    }

    /** The tags a repository of the target registry holds, read with skopeo (HTTPS, the canary's credentials). */
    async function tagsOf(image: string): Promise<string[]> {
      const r = await run(
        "skopeo",
        ["list-tags", "--cert-dir", join(TLS_DIR, "skopeo"), "--creds", `${USER}:${CANARY}`, `docker://${target!.host}/slinky/${image}`],
        { timeoutMs: MINUTE },
      );
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { Tags: string[] }).Tags;
    }

    it(
      "ci on the default branch: build, smoke checks, push, build cache written, signed and verified with real cosign, production tags moved; no password in any output",
      async () => {
        const [result, took] = await seconds(() => ci(COMMIT));
        report.ci = {
          seconds: took,
          summary: result.summary,
          pushed: result.images.filter((i) => i.pushed).length,
          cacheWritten: (result.cache?.images ?? []).filter((i) => i.written).length + (result.cache?.packages?.written ? 1 : 0),
          signing: "",
        };
        expect(result.ok, JSON.stringify(result.errors)).toBe(true);
        expect(result.images.map((i) => i.image).sort()).toEqual(IMAGES.map((i) => i.name).sort());
        for (const image of result.images) {
          expect(image.pushed && image.promoted, image.image).toBe(true);
          expect(await tagsOf(image.image)).toEqual(
            expect.arrayContaining([`${LINE}-${FLAVOR}-main-${COMMIT.slice(0, 8)}`, `${LINE}-${FLAVOR}-main-latest`, `${LINE}-${FLAVOR}-latest`]),
          );
        }
        expect(result.cache?.used).toBe(true);
        expect(result.cache?.packages?.written).toBeTruthy();
        expect(result.cache?.images.every((i) => i.written)).toBe(true);
        // Signed, attested and verified in the engine with real cosign before promotion.
        expect(result.signing?.ok, JSON.stringify(result.signing)).toBe(true);
        expect(result.signing?.images.map((i) => i.image).sort()).toEqual(IMAGES.map((i) => i.name).sort());
        report.ci.signing = result.signing!.images.map((i) => `${i.image} ${i.ms} ms sig ${i.signatureBytes} B att ${i.attestationBytes} B`).join("; ");
        // And outside it: this machine's cosign verifies the production tag's signature with the public key.
        const slurmd = result.images.find((i) => i.image === "slurmd")!;
        const verify = await run(
          "cosign",
          ["verify", "--key", join(work, "cosign.pub"), "--insecure-ignore-tlog=true", "--registry-username", USER, "--registry-password", CANARY, `${target!.host}/slinky/slurmd@${slurmd.digest}`],
          { timeoutMs: 2 * MINUTE, env: { ...process.env, SSL_CERT_FILE: join(TLS_DIR, "ca.pem") } },
        );
        expect(verify.code, verify.stderr).toBe(0);
        const log = readFileSync(join(DAGGER_DIR, "engine.log"), "utf8");
        for (const canary of [CANARY, KEY_CANARY]) expect(log).not.toContain(canary);
      },
      60 * MINUTE,
    );

    it(
      "the same ci on an EMPTY engine state (a GitLab job's fresh dind engine) with the registry kept: package set and images reused, nothing compiled",
      async () => {
        await stopDaggerEngine();
        [, report.ciFreshEngine.engineStartSeconds] = await seconds(() => startDaggerEngine({ ...engineOptions, fresh: true }));
        const [result, took] = await seconds(() => ci(COMMIT_2));
        report.ciFreshEngine = {
          ...report.ciFreshEngine,
          seconds: took,
          summary: result.summary,
          packageSetReused: result.cache?.packages?.hit ?? false,
          imagesReused: (result.cache?.images ?? []).filter((i) => i.reused).length,
        };
        expect(result.ok, JSON.stringify(result.errors)).toBe(true);
        expect(result.cache?.packages?.hit).toBe(true);
        expect(report.ciFreshEngine.imagesReused).toBe(IMAGES.length);
        for (const image of result.images) {
          expect(await tagsOf(image.image)).toContain(`${LINE}-${FLAVOR}-main-${COMMIT_2.slice(0, 8)}`);
        }
        // Nothing compiled: the engine's log names every container it starts (the smoke checks' and
        // cosign's here), and none ran the package set's compile script.
        const engineLog = readFileSync(join(DAGGER_DIR, "engine.log"), "utf8");
        expect(engineLog).toMatch(/starting container/);
        expect(engineLog).not.toMatch(/build-slurm\.sh/);
      },
      60 * MINUTE,
    );
  },
);
