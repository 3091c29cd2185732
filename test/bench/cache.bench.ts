/**
 * Benchmark of the registry build cache (`npm run bench:cache`; not part of
 * `npm test`). Real parts only: Debian's dockerd/BuildKit with an EMPTY data
 * root before every run (its own engine under $SLINKY_ENGINE_DIR, stopped by
 * pid after), Debian's docker-registry on loopback as the cache and the
 * destination, the debian13 stand-ins of the image harness, all 8 images.
 * Keys, lookups, adoption and writes are src/cache/keys.ts and src/cache/cache.ts, the
 * code `ci` runs; the builds are the image harness's `docker build` of the
 * split recipe (packages first, OS layers alongside, images with packages/
 * in their context).
 *
 *   (a) cold: empty cache;  (b) nothing changed;  (c) a file only login uses;
 *   (d) a shared runtime stage (a package added to base-os);  (e) the Slurm pin.
 *
 * Where the package set is compiled, the seconds around the compile: before
 * it starts (build tools, Slurm's build dependencies, the downloads) and after
 * it ends (pyxis, the package set's export, the images that were waiting for
 * it), from BuildKit's output as it arrives. The physical limit of a cold run
 * is the compile alone.
 *
 * Prints a table and writes out/bench/cache.json. Figures, not assertions.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pLimit from "p-limit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cacheRepository, copyAcross, entryLabels, entryTag, type LookupResult, newestTag, planCache, writeEntry } from "../../src/cache/cache.js";
import { IMAGES, type ImageSpec } from "../../src/core/catalog.js";
import { encodeParts, runKeys } from "../../src/cache/keys.js";
import { resolve } from "../../src/build/plan.js";
import { RegistryClient } from "../../src/registry/client.js";
import { parseRef } from "../../src/registry/reference.js";
import { smokeScript } from "../../src/build/smoke.js";
import { gpuPluginsByArch } from "../../src/core/gpu.js";
import { branchTags } from "../../src/core/tags.js";
import {
  BASE_IMAGE,
  docker,
  dockerOk,
  ENGINE_DIR,
  type FileServer,
  INPUTS_DIR,
  REPO,
  run,
  SLURM_SOURCE,
  serveFiles,
  slurmSource,
  startEngine,
  stopEngine,
} from "../images/harness.js";
import { type BuildPlan, buildImage, buildPackagesAndOs, buildPlan, packagesBuildArgs, prepareContext, provenance } from "../images/runner.js";
import { standInSources } from "../images/serve-standins.js";
import { type RunningRegistry, startRegistry } from "../registry/harness.js";
import { fsContext } from "../support/context.js";

const MINUTE = 60_000;
const SHARED_ENGINE = "/var/tmp/slinky-engine";
const WORK = join(ENGINE_DIR, "..");
const OUT = join(REPO, "out", "bench");
const FILES_PORT = Number(process.env.SLINKY_BENCH_FILES_PORT ?? 18766);

if (ENGINE_DIR === SHARED_ENGINE) throw new Error("the benchmark needs its own engine: set SLINKY_ENGINE_DIR (npm run bench:cache does)");

interface Row {
  scenario: string;
  what: string;
  seconds: number;
  /** From the start until every image of the run is built (before checks, pushes, writes). */
  buildSeconds: number;
  engineStartSeconds: number;
  baseLoadSeconds: number;
  packages: "hit" | "miss";
  compileSeconds: number | null;
  /** From the start until the compile step started, and from its end until every image was built. */
  beforeCompileSeconds: number | null;
  afterCompileSeconds: number | null;
  built: string[];
  reused: string[];
  pushedLayers: boolean;
  warnings: string[];
}

const rows: Row[] = [];
let registry: RunningRegistry;
let server: FileServer;
let basePlan: BuildPlan;
let baseId = "";
const BASE_TAR = join(WORK, "base.tar");

const round = (n: number) => Math.round(n * 10) / 10;

const COMPILE_STEP = /^#(\d+) \[slurm-build [0-9/]+\] RUN .*build-slurm\.sh/m;

/**
 * The compile step as BuildKit's plain output tells it, read as it arrives:
 * when it started and ended here, and its own duration from its DONE line.
 */
function compileClock(): { observe: (text: string) => void; startedAt: number | null; endedAt: number | null; seconds: number | null } {
  let pending = "";
  let doneLine: RegExp | null = null; // the compile step's DONE line, once its number is known
  const clock = {
    startedAt: null as number | null,
    endedAt: null as number | null,
    seconds: null as number | null,
    observe(text: string) {
      const lines = (pending + text).split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (doneLine === null) {
          const m = COMPILE_STEP.exec(line);
          if (m) {
            doneLine = new RegExp(`^#${m[1]} DONE ([0-9.]+)s`);
            clock.startedAt = Date.now();
          }
        } else if (clock.endedAt === null) {
          const done = doneLine.exec(line);
          if (done) {
            clock.endedAt = Date.now();
            clock.seconds = Number(done[1]);
          }
        }
      }
    },
  };
  return clock;
}

beforeAll(async () => {
  mkdirSync(OUT, { recursive: true });
  // The same base image in every fresh engine: saved once from the shared engine (read only there).
  if (!existsSync(BASE_TAR)) {
    const saved = await run(process.env.SLINKY_DOCKER ?? "/usr/bin/docker", ["save", "-o", BASE_TAR, BASE_IMAGE], {
      timeoutMs: 10 * MINUTE,
      env: { ...process.env, DOCKER_HOST: `unix://${SHARED_ENGINE}/docker.sock` },
    });
    if (saved.code !== 0) throw new Error(`docker save ${BASE_IMAGE} from the shared engine: ${saved.stderr}`);
  }
  const inspected = await run(process.env.SLINKY_DOCKER ?? "/usr/bin/docker", ["image", "inspect", "--format", "{{.Id}}", BASE_IMAGE], {
    timeoutMs: MINUTE,
    env: { ...process.env, DOCKER_HOST: `unix://${SHARED_ENGINE}/docker.sock` },
  });
  baseId = inspected.stdout.trim();
  if (!/^sha256:[0-9a-f]{64}$/.test(baseId)) throw new Error(`base image id: ${inspected.stdout}${inspected.stderr}`);
  registry = await startRegistry({ kind: "none" });
  const slurmPath = await slurmSource();
  const served = await standInSources(join(INPUTS_DIR, "standins"));
  // (e) serves the same tarball under a second name: a new pin (URL), the same sha256.
  server = await serveFiles({ [SLURM_SOURCE.file]: slurmPath, [`e-${SLURM_SOURCE.file}`]: slurmPath, ...served.files }, FILES_PORT);
  if (!server.origin.endsWith(`:${FILES_PORT}`)) throw new Error(`port ${FILES_PORT} is taken: the keys would change between runs`);
  const sources = {
    base: { name: BASE_IMAGE, id: baseId },
    slurm: { version: SLURM_SOURCE.version, url: server.url(SLURM_SOURCE.file), sha256: SLURM_SOURCE.sha256 },
    standIns: served.override(server),
  };
  const prov = await provenance();
  // The base id is known once it is loaded; the plan is made per run with it.
  basePlan = buildPlan(sources, prov);
}, 30 * MINUTE);

afterAll(async () => {
  await server?.close();
  await registry?.stop();
  writeFileSync(join(OUT, "cache.json"), `${JSON.stringify(rows, null, 2)}\n`);
  console.log(table());
}, 5 * MINUTE);

const seconds = (value: number | null) => (value === null ? "-" : value.toFixed(0));

function table(): string {
  const a = rows.find((r) => r.scenario === "a")?.seconds ?? 0;
  const lines = [
    "| run | what | s | × (a) | builds done s | package set | before compile s | compile s | after compile s | outside compile s | images built | images reused |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| (${r.scenario}) | ${r.what} | ${r.seconds.toFixed(0)} | ${a ? (r.seconds / a).toFixed(2) : "-"} | ${r.buildSeconds.toFixed(0)} | ${r.packages} | ` +
        `${seconds(r.beforeCompileSeconds)} | ${seconds(r.compileSeconds)} | ${seconds(r.afterCompileSeconds)} | ` +
        `${r.compileSeconds === null ? "-" : (r.buildSeconds - r.compileSeconds).toFixed(0)} | ${r.built.length} | ${r.reused.length} |`,
    ),
  ];
  return lines.join("\n");
}

interface Scenario {
  id: string;
  what: string;
  /** Edits the recipe copy before the run. */
  edit?: (recipe: string) => void;
  slurmUrl?: string;
}

async function runScenario(scenario: Scenario): Promise<Row> {
  const dir = join(WORK, `run-${scenario.id}`);
  rmSync(dir, { recursive: true, force: true });
  const recipe = join(dir, "recipe");
  const logs = join(OUT, scenario.id);
  rmSync(logs, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });
  cpSync(join(REPO, "dockerfiles", "debian"), recipe, { recursive: true });
  scenario.edit?.(recipe);

  // A fresh engine: empty data root.
  await wipeData();
  let t = Date.now();
  const engine = await startEngine();
  if (engine.startedPid === null) throw new Error(`a daemon already answers on ${ENGINE_DIR}: not a fresh engine`);
  const engineStartSeconds = (Date.now() - t) / 1000;
  try {
    t = Date.now();
    await dockerOk(["load", "-i", BASE_TAR], { timeoutMs: 10 * MINUTE });
    const loaded = (await dockerOk(["image", "inspect", "--format", "{{.Id}}", BASE_IMAGE])).trim();
    if (loaded !== baseId) throw new Error(`the loaded base is ${loaded}, the shared engine's ${baseId}`);
    const baseLoadSeconds = (Date.now() - t) / 1000;

    // --- the run's work, timed from here ---
    const started = Date.now();
    const clock = compileClock();
    const slurmUrl = scenario.slurmUrl ?? server.url(SLURM_SOURCE.file);
    const args = { ...basePlan.args, SLURM_URL: slurmUrl };
    const plan: BuildPlan = {
      ...basePlan,
      args,
      dockerfile: join(recipe, "Dockerfile"),
      packagesDockerfile: join(recipe, "Dockerfile.packages"),
      recipe,
      context: join(dir, "context"),
    };
    const resolved = resolve(basePlan.manifest, { slurmVersion: SLURM_SOURCE.line, flavor: "debian13", group: "all" });
    const keys = await runKeys({
      manifest: basePlan.manifest,
      resolved,
      context: fsContext(recipe),
      buildArgs: args,
      baseDigest: baseId,
    });
    const client = new RegistryClient({ plainHttp: true, minBackoffMs: 50, retries: 2 });
    const cacheRegistry = `${registry.host}/slinky/cache`;
    const scope = { kind: "default" } as const;
    const cachePlan = await planCache({ client, registry: cacheRegistry, scope, keys, images: IMAGES.map((i) => i.name) });
    const builtAt = new Date().toISOString();
    const tags = branchTags({ line: resolved.line, flavor: "debian13", branch: "main", sha: `${scenario.id.charCodeAt(0).toString(16)}0000000`, defaultBranch: "main" });
    const destRef = (image: ImageSpec) => `${registry.host}/slinky/${image.name}:${tags.commit}`;
    const warnings = [cachePlan.packages, ...Object.values(cachePlan.images)].flatMap((r) => r.warnings);
    const hit = (r: LookupResult) => r.hit;
    const toBuild = IMAGES.filter((image) => !hit(cachePlan.images[image.name] as LookupResult));
    const reused = IMAGES.filter((image) => hit(cachePlan.images[image.name] as LookupResult));

    // Package set: pulled by digest on a hit, built (OS layers alongside) on a miss.
    if (toBuild.length > 0) {
      if (cachePlan.packages.hit) {
        const dest = prepareContext(plan);
        await dockerOk(["pull", cachePlan.packages.entry.ref], { timeoutMs: 10 * MINUTE });
        const box = `bench-packages-${scenario.id}`;
        await docker(["rm", "-f", box]);
        await dockerOk(["create", "--name", box, cachePlan.packages.entry.ref, "/none"]);
        mkdirSync(dest, { recursive: true });
        await dockerOk(["cp", `${box}:/slurm`, join(dest, "slurm")]);
        await dockerOk(["cp", `${box}:/pyxis`, join(dest, "pyxis")]);
        await dockerOk(["rm", box]);
      } else {
        await buildPackagesAndOs(plan, logs, 40 * MINUTE, clock.observe);
      }
    }
    // Images: the missed ones built (the engine shares their common stages), with the cache labels.
    const limit = pLimit(4);
    const digests = new Map<string, string>();
    await Promise.all(
      toBuild.map((image) =>
        limit(async () => {
          const key = keys.images[image.name]!;
          await buildImage({ ...plan, ref: destRef }, image, join(logs, `${image.name}.log`), 30 * MINUTE, entryLabels(key.key, scope, builtAt, encodeParts(key.parts)));
        }),
      ),
    );
    const buildSeconds = (Date.now() - started) / 1000;
    // As runCi: checks, pushes and writes with the same bounded concurrency (4) as the builds.
    // Checks of what was built, before anything is pushed or recorded.
    await Promise.all(
      toBuild.map((image) =>
        limit(async () => {
          const smoke = await docker(
            ["run", "--rm", "--network", "host", "--entrypoint", "sh", destRef(image), "-c", smokeScript(image.name, SLURM_SOURCE.version, gpuPluginsByArch(resolved.flavor))],
            { timeoutMs: 5 * MINUTE },
          );
          if (smoke.code !== 0) throw new Error(`smoke ${image.name}: ${smoke.stdout}${smoke.stderr}`);
        }),
      ),
    );
    // Publish: built images pushed, reused ones adopted by manifest copy (no layer).
    await Promise.all([
      ...toBuild.map((image) =>
        limit(async () => {
          const pushed = await dockerOk(["push", destRef(image)], { timeoutMs: 20 * MINUTE });
          const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed)?.[1];
          if (!digest) throw new Error(`push ${image.name}: no digest in ${pushed.slice(-500)}`);
          digests.set(image.name, digest);
        }),
      ),
      ...reused.map((image) =>
        limit(async () => {
          const entry = (cachePlan.images[image.name] as Extract<LookupResult, { hit: true }>).entry;
          const target = parseRef(destRef(image));
          const adopted = await copyAcross(client, parseRef(entry.ref), { ...target, tag: target.tag as string });
          expect(parseRef(adopted).digest).toBe(entry.digest);
        }),
      ),
    ]);
    // Record what was built.
    await Promise.all(
      toBuild.map((image) =>
        limit(async () => {
          const written = await writeEntry({
            client,
            source: { ...parseRef(destRef(image)), tag: undefined, digest: digests.get(image.name) as string },
            repository: cacheRepository(cacheRegistry, image.name),
            key: keys.images[image.name]!.key,
            scope,
          });
          if (written.error) warnings.push(written.error);
        }),
      ),
    );
    if (!cachePlan.packages.hit) {
      const repo = cacheRepository(cacheRegistry, "packages");
      const ref = `${repo.registry}/${repo.repository}:${entryTag(keys.packages.key, scope)}`;
      await dockerOk(packagesBuildArgs(plan, { tag: ref, labels: entryLabels(keys.packages.key, scope, builtAt, encodeParts(keys.packages.parts)) }), {
        timeoutMs: 10 * MINUTE,
        logFile: join(logs, "packages-entry.log"),
      });
      const pushed = await dockerOk(["push", ref], { timeoutMs: 10 * MINUTE });
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed)?.[1] as string;
      await copyAcross(client, { ...repo, digest }, { ...repo, tag: newestTag(scope) });
    }
    const seconds = (Date.now() - started) / 1000;
    const row: Row = {
      scenario: scenario.id,
      what: scenario.what,
      seconds: round(seconds),
      buildSeconds: round(buildSeconds),
      engineStartSeconds: round(engineStartSeconds),
      baseLoadSeconds: round(baseLoadSeconds),
      packages: cachePlan.packages.hit ? "hit" : "miss",
      compileSeconds: clock.seconds,
      beforeCompileSeconds: clock.startedAt === null ? null : round((clock.startedAt - started) / 1000),
      afterCompileSeconds: clock.endedAt === null ? null : round(buildSeconds - (clock.endedAt - started) / 1000),
      built: toBuild.map((i) => i.name),
      reused: reused.map((i) => i.name),
      pushedLayers: toBuild.length > 0,
      warnings,
    };
    rows.push(row);
    console.log(`(${row.scenario}) ${row.what}: ${row.seconds} s, package set ${row.packages}, built ${row.built.join(" ") || "-"}`);
    return row;
  } finally {
    await stopEngine(engine);
    await wipeData();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Empties the benchmark engine's data root (its daemon stopped); never crosses into a mount. */
async function wipeData(): Promise<void> {
  const result = await run("rm", ["-rf", "--one-file-system", join(ENGINE_DIR, "data")], { timeoutMs: 10 * MINUTE });
  if (result.code !== 0) throw new Error(`wiping ${ENGINE_DIR}/data: ${result.stderr}`);
}

const appendTo = (path: string, text: string) => writeFileSync(path, readFileSync(path, "utf8") + text);

it("(a) cold, empty cache", async () => {
  const row = await runScenario({ id: "a", what: "cold, empty cache" });
  expect(row.packages).toBe("miss");
  expect(row.built).toHaveLength(8);
}, 60 * MINUTE);

it("(b) nothing changed", async () => {
  const row = await runScenario({ id: "b", what: "nothing changed (README-only commit)" });
  expect(row.packages).toBe("hit");
  expect(row.built).toEqual([]);
}, 30 * MINUTE);

it("(c) a file only login uses changed", async () => {
  const row = await runScenario({
    id: "c",
    what: "login's entrypoint changed",
    edit: (recipe) => appendTo(join(recipe, "rootfs/usr/local/bin/login-entrypoint.sh"), "\n# bench: changed\n"),
  });
  expect(row.built).toEqual(["login", "login-pyxis"]);
}, 30 * MINUTE);

it("(d) a shared runtime stage changed", async () => {
  const row = await runScenario({
    id: "d",
    what: "a package added to base-os",
    edit: (recipe) => {
      const file = join(recipe, "Dockerfile");
      writeFileSync(file, readFileSync(file, "utf8").replace("apt.sh install tini supervisor procps", "apt.sh install tini supervisor procps less"));
    },
  });
  expect(row.packages).toBe("hit");
  expect(row.built).toHaveLength(8);
}, 40 * MINUTE);

it("(e) the Slurm pin changed", async () => {
  const row = await runScenario({ id: "e", what: "Slurm pin changed", slurmUrl: server.url(`e-${SLURM_SOURCE.file}`) });
  expect(row.packages).toBe("miss");
  expect(row.built).toHaveLength(8);
}, 60 * MINUTE);
