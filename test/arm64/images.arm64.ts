/**
 * `npm run test:arm64` (long; not part of `npm test`): the 8 images for linux/arm64
 * built on this amd64 machine from the same Dockerfiles as linux/amd64, then a
 * two-platform index of each through publish and promote.
 *
 * - The package set (Dockerfile.packages) is cross-compiled: its stages run on the
 *   build machine's platform (amd64) with Debian's cross toolchain; nothing of the
 *   compile is emulated. docker 20.10's image store holds one platform per name, so
 *   the build machine's base is the amd64 base image (BUILD_BASE_IMAGE) and the
 *   images' base the debootstrapped arm64 one (test/images/base.sh NAME arm64).
 * - The images' stages run under qemu emulation (test/emulation.sh).
 * - Stand-ins as in the image harness, made for arm64 where the file is per
 *   architecture: enroot and enroot+caps .debs, the NVIDIA toolkit repository
 *   (labelled STAND-IN, served from 127.0.0.1 under arm64/), pinned in the site
 *   manifest as linux/arm64's pins (inputs.*.arch.arm64).
 * - The smoke checks of src/build/smoke.ts in every arm64 image: uname -m is aarch64,
 *   every Slurm and pyxis ELF is aarch64 with no missing library, the daemons print
 *   the version.
 * - Each image's amd64 and arm64 builds pushed to the real docker-registry on
 *   127.0.0.1 (token auth) as one OCI index (what Dagger's publish with platform
 *   variants pushes), published and promoted by src/release/publish.ts and promote.ts, read back with skopeo.
 *
 * Figures (seconds, this machine) go to out/arm64-report.json and the console.
 */
import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGES, type ImageSpec, OS_TARGETS } from "../../src/core/catalog.js";
import { MEDIA_TYPES, RegistryClient } from "../../src/registry/client.js";
import { digestOf } from "../../src/registry/reference.js";
import { promote } from "../../src/release/promote.js";
import { publish, type PushFn } from "../../src/release/publish.js";
import { smokeScript } from "../../src/build/smoke.js";
import { gpuPluginsByArch } from "../../src/core/gpu.js";
import { branchTags } from "../../src/core/tags.js";
import {
  BASE_IMAGE,
  BASE_IMAGE_ARM64,
  docker,
  dockerOk,
  type Engine,
  ENGINE_DIR,
  ensureBase,
  FILES_PORT,
  type FileServer,
  INPUTS_DIR,
  REPO,
  SLURM_SOURCE,
  serveFiles,
  slurmSource,
  startEngine,
  stopEngine,
} from "../images/harness.js";
import {
  type BuildPlan,
  buildImage,
  buildOsTarget,
  buildPackages,
  buildPlan,
  type HarnessSources,
  prepareContext,
  provenance,
} from "../images/runner.js";
import { standInSources } from "../images/serve-standins.js";
import { type RunningRegistry, type RunningTokenServer, startAuthRegistry } from "../registry/harness.js";

const execFileAsync = promisify(execFile);
const OUT = join(REPO, "out");
const LOGS = join(OUT, "arm64-logs");
const MINUTE = 60_000;
const USER = { username: "gitlab-ci-token", password: `canary-${Date.now().toString(36)}-arm64` };

const round = (value: number) => Number(value.toFixed(1));
const started = Date.now();
const report = {
  machine: { cores: 0, loadBefore: "" },
  emulation: "",
  amd64: { packagesSeconds: 0, osSeconds: 0, imagesSeconds: {} as Record<string, number>, note: "" },
  amd64HarnessCold: null as null | { packagesSeconds: number; osSeconds: number; imagesColdSeconds: number; from: string },
  arm64: {
    packagesSeconds: 0,
    osSeconds: 0,
    imagesSeconds: {} as Record<string, number>,
    smokeSeconds: {} as Record<string, number>,
    slurmPackages: [] as string[],
    pyxisPackages: [] as string[],
  },
  index: { images: [] as { image: string; index: string; amd64: string; arm64: string }[], passed: false },
  totalSeconds: 0,
};

let engine: Engine | undefined;
let server: FileServer | undefined;
let amd64: BuildPlan;
let arm64: BuildPlan;
/** Why arm64 cannot run here ("" when it can): decided before the tests are collected. */
const status = spawnSync(join(import.meta.dirname, "..", "emulation.sh"), ["status"], { encoding: "utf8", timeout: 60_000 });
const emulation = status.status === 0 ? "" : `arm64 emulation is not available: ${`${status.stdout}${status.stderr}`.trim()}`;

beforeAll(async () => {
  mkdirSync(LOGS, { recursive: true });
  report.machine.loadBefore = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  report.machine.cores = (await import("node:os")).availableParallelism();
  report.emulation = emulation || status.stdout.trim();
  if (emulation) return;
  engine = await startEngine();
  const amd64Base = await ensureBase(BASE_IMAGE);
  const arm64Base = await ensureBase(BASE_IMAGE_ARM64, "arm64");
  const slurmPath = await slurmSource();
  const servedAmd64 = await standInSources(join(INPUTS_DIR, "standins"));
  const servedArm64 = await standInSources(join(INPUTS_DIR, "standins-arm64"), "arm64");
  server = await serveFiles({ [SLURM_SOURCE.file]: slurmPath, ...servedAmd64.files, ...servedArm64.files }, FILES_PORT);
  const slurm = { version: SLURM_SOURCE.version, url: server.url(SLURM_SOURCE.file), sha256: SLURM_SOURCE.sha256 };
  const prov = await provenance();
  const sources = (base: { name: string; id: string }, standIns: unknown): HarnessSources => ({ base, slurm, standIns });
  amd64 = buildPlan(sources({ name: BASE_IMAGE, id: amd64Base }, servedAmd64.override(server)), prov);
  arm64 = buildPlan(sources({ name: BASE_IMAGE_ARM64, id: arm64Base }, servedArm64.override(server)), prov, {
    platform: "linux/arm64",
    buildBase: BASE_IMAGE,
  });
}, 60 * MINUTE);

afterAll(async () => {
  await server?.close();
  if (engine) await stopEngine(engine);
  report.totalSeconds = round((Date.now() - started) / 1000);
  const harness = join(OUT, "images-report.json");
  if (existsSync(harness)) {
    const last = JSON.parse(readFileSync(harness, "utf8")) as {
      packages: { seconds: number; osSeconds: number };
      images: { coldSeconds: number | null }[];
    };
    report.amd64HarnessCold = {
      packagesSeconds: last.packages.seconds,
      osSeconds: last.packages.osSeconds,
      imagesColdSeconds: round(last.images.reduce((sum, row) => sum + (row.coldSeconds ?? 0), 0)),
      from: "out/images-report.json (the image harness's last run: cold when it compiled)",
    };
  }
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "arm64-report.json"), `${JSON.stringify(report, null, 2)}\n`);
  const sum = (values: Record<string, number>) => round(Object.values(values).reduce((a, b) => a + b, 0));
  console.log(
    [
      `arm64 run (${report.machine.cores} cores, load before ${report.machine.loadBefore}), total ${report.totalSeconds} s`,
      `amd64 (this run, warm when the image harness ran first): packages ${report.amd64.packagesSeconds} s, OS layers ${report.amd64.osSeconds} s, images ${sum(report.amd64.imagesSeconds)} s`,
      report.amd64HarnessCold
        ? `amd64 image harness's last run (cold only if it compiled): packages ${report.amd64HarnessCold.packagesSeconds} s (OS layers alongside ${report.amd64HarnessCold.osSeconds} s), images cold ${report.amd64HarnessCold.imagesColdSeconds} s`
        : "amd64 image harness: no report",
      `arm64: packages cross-compiled ${report.arm64.packagesSeconds} s, OS layers emulated ${report.arm64.osSeconds} s, images emulated ${sum(report.arm64.imagesSeconds)} s, smoke ${sum(report.arm64.smokeSeconds)} s`,
      `two-platform index: ${report.index.passed ? "passed" : "not passed"}`,
    ].join("\n"),
  );
}, 10 * MINUTE);

const amd64Ref = (image: ImageSpec) => amd64.ref(image);
const arm64Ref = (image: ImageSpec) => arm64.ref(image);

describe.skipIf(emulation !== "").sequential(`linux/arm64 images on an amd64 machine${emulation ? ` (skipped: ${emulation})` : ""}`, () => {
  it("amd64: the package set and the 8 images (the image harness's; from its cache when it ran first)", async () => {
    const dest = prepareContext(amd64);
    report.amd64.packagesSeconds = round(await buildPackages(amd64, dest, join(LOGS, "amd64-packages.log"), 40 * MINUTE));
    const os = Date.now();
    for (const target of OS_TARGETS) await buildOsTarget(amd64, target, join(LOGS, `amd64-${target}.log`), 30 * MINUTE);
    report.amd64.osSeconds = round((Date.now() - os) / 1000);
    for (const image of IMAGES) {
      const built = await buildImage(amd64, image, join(LOGS, `amd64-${image.name}.log`), 30 * MINUTE);
      report.amd64.imagesSeconds[image.name] = round(built.seconds);
    }
    report.amd64.note = "this run's amd64 builds; cold figures are the image harness's";
  });

  it("arm64 package set: cross-compiled on the build machine, every package for arm64, the same packages as amd64", async () => {
    const dest = prepareContext(arm64);
    report.arm64.packagesSeconds = round(await buildPackages(arm64, dest, join(LOGS, "arm64-packages.log"), 60 * MINUTE));
    const log = readFileSync(join(LOGS, "arm64-packages.log"), "utf8");
    expect(log).toContain("build-slurm.sh: cross-building on amd64 for arm64 (aarch64-linux-gnu-gcc)");
    expect(log).toContain("build-pyxis.sh: cross-building on amd64 for arm64");
    report.arm64.slurmPackages = readdirSync(join(dest, "slurm")).sort();
    report.arm64.pyxisPackages = readdirSync(join(dest, "pyxis")).sort();
    expect(report.arm64.slurmPackages).toEqual(readdirSync(join(amd64.context, "packages", "slurm")).sort());
    expect(report.arm64.pyxisPackages).toEqual(readdirSync(join(amd64.context, "packages", "pyxis")).sort());
    for (const [dir, names] of [
      ["slurm", report.arm64.slurmPackages],
      ["pyxis", report.arm64.pyxisPackages],
    ] as const) {
      for (const name of names) {
        const { stdout } = await execFileAsync("dpkg-deb", ["--field", join(dest, dir, name), "Architecture"]);
        expect(`${name}: ${stdout.trim()}`).toMatch(new RegExp(`^${name.replace(/[.+]/g, "\\$&")}: (arm64|all)$`));
      }
    }
  });

  it("arm64 OS layers, under emulation", async () => {
    const os = Date.now();
    for (const target of OS_TARGETS) await buildOsTarget(arm64, target, join(LOGS, `arm64-${target}.log`), 60 * MINUTE);
    report.arm64.osSeconds = round((Date.now() - os) / 1000);
  });

  it.each(IMAGES.map((image) => [image.name, image] as const))("arm64 image %s: built from the same Dockerfile, linux/arm64", async (_name, image) => {
    const built = await buildImage(arm64, image, join(LOGS, `arm64-${image.name}.log`), 60 * MINUTE);
    report.arm64.imagesSeconds[image.name] = round(built.seconds);
    expect((await dockerOk(["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", arm64Ref(image)])).trim()).toBe("linux/arm64");
  });

  it.each(IMAGES.map((image) => [image.name, image] as const))("arm64 image %s: smoke checks pass under emulation (aarch64 ELFs, no missing library, versions)", async (_name, image) => {
    const t = Date.now();
    const result = await docker(
      ["run", "--rm", "--network", "none", "--platform", "linux/arm64", "--entrypoint", "sh", arm64Ref(image), "-c", `uname -m; ${smokeScript(image.name, SLURM_SOURCE.version, gpuPluginsByArch(arm64.resolved.flavor))}`],
      { timeoutMs: 20 * MINUTE },
    );
    report.arm64.smokeSeconds[image.name] = round((Date.now() - t) / 1000);
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout.split("\n")[0]).toBe("aarch64");
    expect(result.stdout).toMatch(new RegExp(`^smoke ${image.name}: all \\d+ checks passed$`, "m"));
  });

  describe.sequential("a two-platform index of each image through publish and promote", () => {
    let registry: RunningRegistry | undefined;
    let tokens: RunningTokenServer | undefined;
    let work: string;
    const client = () => new RegistryClient({ ...USER, plainHttp: true, minBackoffMs: 20 });
    const children = new Map<string, { arch: string; digest: string; config: string }[]>();

    beforeAll(async () => {
      if (emulation) return;
      ({ registry, tokens } = await startAuthRegistry("token", [USER]));
      work = mkdtempSync(join(OUT, "arm64-oci-"));
    }, 5 * MINUTE);
    afterAll(async () => {
      await registry?.stop();
      await tokens?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    }, 5 * MINUTE);

    /** One platform's image, out of the engine's store (skopeo docker-daemon:) into the registry by digest. */
    const pushPlatform = async (ref: string, repo: string, local: string) => {
      const layout = mkdtempSync(join(work, "layout-"));
      try {
        await execFileAsync(
          "skopeo",
          ["copy", "--quiet", "--src-daemon-host", `unix://${ENGINE_DIR}/docker.sock`, "--format", "oci", `docker-daemon:${local}`, `oci:${layout}:image`],
          { timeout: 20 * MINUTE, maxBuffer: 16 << 20 },
        );
        const blob = (digest: string) => readFileSync(join(layout, "blobs", "sha256", digest.slice("sha256:".length)));
        const digest = (JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: { digest: string }[] }).manifests[0]!.digest;
        const manifest = blob(digest);
        const parsed = JSON.parse(manifest.toString("utf8")) as { config: { digest: string }; layers: { digest: string }[] };
        const c = client();
        for (const d of [...parsed.layers.map((l) => l.digest), parsed.config.digest]) await c.uploadBlob(ref, blob(d));
        await c.putManifest(`${repo}@${digest}`, manifest, MEDIA_TYPES.ociManifest);
        return { digest, size: manifest.length, config: parsed.config.digest };
      } finally {
        rmSync(layout, { recursive: true, force: true });
      }
    };

    /** As Dagger's publish with platform variants: each platform's image by digest, then the index under the tag. */
    const push: PushFn = async (name, ref) => {
      const image = IMAGES.find((i) => i.name === name)!;
      const repo = ref.slice(0, ref.lastIndexOf(":"));
      const amd = await pushPlatform(ref, repo, amd64Ref(image));
      const arm = await pushPlatform(ref, repo, arm64Ref(image));
      children.set(name, [
        { arch: "amd64", digest: amd.digest, config: amd.config },
        { arch: "arm64", digest: arm.digest, config: arm.config },
      ]);
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MEDIA_TYPES.ociIndex,
          manifests: [
            { mediaType: MEDIA_TYPES.ociManifest, digest: amd.digest, size: amd.size, platform: { os: "linux", architecture: "amd64" } },
            { mediaType: MEDIA_TYPES.ociManifest, digest: arm.digest, size: arm.size, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
          ],
        }),
      );
      return `${ref}@${await client().putManifest(ref, index, MEDIA_TYPES.ociIndex)}`;
    };

    it("pushed, promoted, read back with skopeo: the index bytes unchanged at every tag, each platform its own image", async () => {
        const host = registry!.host;
      const path = `${host}/slinky/arm64`;
      const tags = branchTags({ line: SLURM_SOURCE.line, flavor: "debian13", branch: "main", sha: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", defaultBranch: "main" });
      const names = IMAGES.map((i) => i.name);
      const published = await publish({ registry: path, images: names, tags, push, client: client(), concurrency: 2 });
      expect(published.map((p) => [p.image, p.ok, p.error])).toEqual(names.map((n) => [n, true, null]));
      const promotion = await promote({
        registry: path,
        images: names,
        published,
        productionTag: tags.production,
        commitTag: tags.commit,
        branch: "main",
        defaultBranch: "main",
        client: client(),
      });
      expect(promotion.promoted, promotion.reason).toBe(true);
      const skopeo = async (args: string[]) =>
        (await execFileAsync("skopeo", [...args, "--tls-verify=false", "--creds", `${USER.username}:${USER.password}`], { encoding: "buffer", timeout: 60_000, maxBuffer: 16 << 20 }))
          .stdout;
      for (const row of published) {
        const kids = children.get(row.image)!;
        expect(row.mediaType).toBe(MEDIA_TYPES.ociIndex);
        expect(row.platforms).toEqual([
          { platform: "linux/amd64", digest: kids[0]!.digest },
          { platform: "linux/arm64/v8", digest: kids[1]!.digest },
        ]);
        for (const tag of [tags.commit, tags.branchLatest, tags.production!]) {
          const ref = `${path}/${row.image}:${tag}`;
          const raw = await skopeo(["inspect", "--raw", `docker://${ref}`]);
          expect(digestOf(raw), ref).toBe(row.digest);
          for (const kid of kids) {
            const args = ["--override-os", "linux", "--override-arch", kid.arch];
            const seen = JSON.parse((await skopeo(["inspect", ...args, `docker://${ref}`])).toString("utf8")) as { Architecture: string; Digest: string };
            const config = await skopeo(["inspect", "--config", "--raw", ...args, `docker://${ref}`]);
            expect([seen.Architecture, seen.Digest, digestOf(config)], `${ref} ${kid.arch}`).toEqual([kid.arch, row.digest, kid.config]);
          }
        }
        report.index.images.push({ image: row.image, index: row.digest!, amd64: kids[0]!.digest, arm64: kids[1]!.digest });
      }
      report.index.passed = true;
    });
  });
});
