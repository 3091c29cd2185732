/**
 * The real build: all 8 targets of dockerfiles/debian/Dockerfile for the debian13
 * flavor, built by Debian's dockerd/BuildKit on a private socket, with the build
 * arguments and labels `build` uses; then every image's smoke checks and a mini
 * Slurm cluster on loopback. Writes out/images-report.json.
 *
 * Stand-ins (this machine reaches only Debian's mirror and npm): the base image is
 * debootstrapped trixie; the Slurm source is Debian's slurm-wlm 24.11.5 orig tarball
 * (SchedMD's own tag archive); pyxis, enroot, kubectl and the NVIDIA repository are
 * made by test/images/standins.ts. All are served from 127.0.0.1 through the same
 * URL/sha256 build arguments a site would set.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGES, type ImageSpec } from "../../src/core/catalog.js";
import { smokeScript } from "../../src/build/smoke.js";
import { gpuPluginsByArch } from "../../src/core/gpu.js";
import { CONTAINER_PREFIX, logsOf, removeContainers, waitFor } from "./cluster.js";
import {
  BASE_IMAGE,
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
} from "./harness.js";
import { type ComposeReport, composeTests } from "./compose.js";
import { miniClusterTests } from "./mini-cluster.js";
import { type GpuReport, gpuTests } from "./gpu.js";
import { type HaReport, haTests } from "./operator-ha.js";
import { type ClusterSubject, operatorClusterTests } from "./operator-cluster.js";
import {
  type BuildPlan,
  buildImage,
  buildPackagesAndOs,
  buildPlan,
  type HarnessSources,
  imageLabelsOf,
  imageSizeBytes,
  provenance,
} from "./runner.js";
import { standInSources } from "./serve-standins.js";
import { type ContainerJobsReport, containerJobTests } from "./container-jobs.js";
import { realInputsFrom } from "./real-inputs.js";

const OUT = join(REPO, "out");
const LOGS = join(OUT, "images-logs");
const MINUTE = 60_000;

interface ImageRow {
  image: string;
  ref: string;
  id: string | null;
  sizeMB: number | null;
  coldSeconds: number | null;
  warmSeconds: number | null;
  smoke: "pass" | "fail" | null;
}

const startedAt = Date.now();
/** The real pyxis and enroot this run was given (bad ones are refused here, before any build). */
const REAL = realInputsFrom(process.env);
const STAND_INS = [REAL.pyxis ? "" : "pyxis", REAL.enroot ? "" : "enroot"].filter(Boolean);
const rows = new Map<string, ImageRow>(
  IMAGES.map((image) => [
    image.name,
    { image: image.name, ref: "", id: null, sizeMB: null, coldSeconds: null, warmSeconds: null, smoke: null },
  ]),
);
const report = {
  flavor: "debian13",
  slurmVersion: SLURM_SOURCE.version as string,
  /** Which inputs were real and which STAND-IN. */
  inputs: { slurm: SLURM_SOURCE.standIn ? `STAND-IN ${SLURM_SOURCE.version}` : `real ${SLURM_SOURCE.version} (${SLURM_SOURCE.file})`, pyxis: "", enroot: "" },
  engine: { dir: ENGINE_DIR, reused: false },
  base: { name: BASE_IMAGE, id: "" },
  setupSeconds: 0,
  images: [] as ImageRow[],
  packages: { seconds: 0, osSeconds: 0, slurm: [] as string[], pyxis: [] as string[] },
  cluster: { sinfo: "", slurmctldUsers: "", srun: "", sacct: "", mpiList: "", mpi: "", passed: false },
  gpu: { nvidia: "", nvmlMissing: "", nvml: "", node: "", srun: "", operator: "", passed: false } as GpuReport,
  ha: { failover: { sigterm: null, sigkill: null }, failback: { sigterm: null, sigkill: null }, ping: "", prologs: "", sacct: "", passed: false } as HaReport,
  pyxisMounts: { passed: false },
  operator: { passed: false, checks: {} as Record<string, string>, needsSlurm2511: [] as string[] },
  containerJobs: { imageSeconds: 0, firstStartSeconds: 0, secondStartSeconds: 0, registryFirstSeconds: 0, registrySecondSeconds: 0, checks: {}, passed: false } as ContainerJobsReport,
  compose: { upSeconds: 0, health: {}, sinfo: "", srun: "", sacct: "", mpi: "", restPing: "", leftAfterDown: [], passed: false } as ComposeReport,
  totalSeconds: 0,
};

let engine: Engine | undefined;
let server: FileServer | undefined;
let plan: BuildPlan;
const containers: string[] = [];

const round = (value: number, digits = 1) => Number(value.toFixed(digits));

beforeAll(async () => {
  mkdirSync(LOGS, { recursive: true });
  engine = await startEngine();
  report.engine.reused = engine.startedPid === null;
  report.base.id = await ensureBase(BASE_IMAGE);
  const slurmPath = await slurmSource();
  const served = await standInSources(join(INPUTS_DIR, "standins"), undefined, REAL);
  report.inputs = { ...report.inputs, ...served.inputs };
  server = await serveFiles({ [SLURM_SOURCE.file]: slurmPath, ...served.files }, FILES_PORT);
  const sources: HarnessSources = {
    base: { name: BASE_IMAGE, id: report.base.id },
    slurm: { version: SLURM_SOURCE.version, url: server.url(SLURM_SOURCE.file), sha256: SLURM_SOURCE.sha256 },
    standIns: served.override(server),
  };
  plan = buildPlan(sources, await provenance());
  report.setupSeconds = round((Date.now() - startedAt) / 1000);
}, 40 * MINUTE);

afterAll(async () => {
  const errors: unknown[] = [];
  const attempt = async (step: () => Promise<void> | void) => {
    try {
      await step();
    } catch (error) {
      errors.push(error);
    }
  };
  await attempt(() => removeContainers(containers));
  await attempt(() => server?.close());
  await attempt(() => (engine ? stopEngine(engine) : undefined));
  report.images = [...rows.values()];
  report.totalSeconds = round((Date.now() - startedAt) / 1000);
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "images-report.json"), `${JSON.stringify(report, null, 2)}\n`);
  console.log(renderTable());
  if (errors.length > 0) throw new AggregateError(errors, "image harness cleanup failed");
}, 5 * MINUTE);

function renderTable(): string {
  const header = ["image", "size MB", "cold s", "warm s", "smoke"];
  const cells = [...rows.values()].map((row) => [
    row.image,
    row.sizeMB === null ? "-" : row.sizeMB.toFixed(0),
    row.coldSeconds === null ? "-" : row.coldSeconds.toFixed(1),
    row.warmSeconds === null ? "-" : row.warmSeconds.toFixed(1),
    row.smoke ?? "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join("  ");
  return [
    `inputs: Slurm ${report.inputs.slurm}, pyxis ${report.inputs.pyxis}, enroot ${report.inputs.enroot}`,
    `debian13 images, Slurm ${report.slurmVersion} (engine ${report.engine.reused ? "reused" : "started"}, ` +
      `setup ${report.setupSeconds} s, total ${report.totalSeconds} s)`,
    line(header),
    ...cells.map(line),
    `packages: ${report.packages.seconds} s (OS layers alongside: ${report.packages.osSeconds} s)`,
    `mini cluster: ${report.cluster.passed ? "passed" : "not passed"}`,
    `GPU detection (STAND-IN driver files and NVML): ${report.gpu.passed ? `passed (srun ${report.gpu.srun})` : "not passed"}`,
    `operator-shaped cluster: ${report.operator.passed ? "passed" : "not passed"}` +
      (report.operator.needsSlurm2511.length > 0 ? ` (not run, need Slurm 25.11: ${report.operator.needsSlurm2511.join("; ")})` : ""),
    `container jobs: ${report.containerJobs.passed ? `passed (image ${report.containerJobs.imageSeconds} s, first start ${report.containerJobs.firstStartSeconds} s, second ${report.containerJobs.secondStartSeconds} s; from the registry ${report.containerJobs.registryFirstSeconds} s, again ${report.containerJobs.registrySecondSeconds} s)` : STAND_INS.length > 0 ? "not run (STAND-IN pyxis/enroot)" : "not passed"}`,
    `HA controllers: ${report.ha.passed ? `passed (failover SIGTERM ${JSON.stringify(report.ha.failover.sigterm)}, SIGKILL ${JSON.stringify(report.ha.failover.sigkill)}; failback ${JSON.stringify(report.ha.failback)} s)` : "not passed"}`,
    `compose cluster: ${report.compose.passed ? `passed (up and healthy in ${report.compose.upSeconds} s)` : "not passed"}`,
  ].join("\n");
}

describe.sequential("debian13 images built by BuildKit", () => {
  describe.sequential("build (first build, then an unchanged rebuild)", () => {
    it(
      "packages (Dockerfile.packages), with the OS layers built alongside, into the images' context",
      async () => {
        const built = await buildPackagesAndOs(plan, LOGS, 40 * MINUTE);
        report.packages.seconds = round(built.packagesSeconds);
        report.packages.osSeconds = round(built.osSeconds);
        report.packages.slurm = readdirSync(join(plan.context, "packages", "slurm")).sort();
        report.packages.pyxis = readdirSync(join(plan.context, "packages", "pyxis")).sort();
        // Exactly the Slurm packages the images' stages install (compile only what
        // ships: build-slurm.sh's NOT_SHIPPED are not assembled), each Package.deb.
        const named = [...readFileSync(join(REPO, "dockerfiles", "debian", "Dockerfile"), "utf8").matchAll(/\/debs\/(slurm-smd[a-z0-9.+-]*\.deb)/g)].map((m) => m[1]!);
        expect(report.packages.slurm).toEqual([...new Set(named)].sort());
        expect(report.packages.slurm.every((name) => /^[a-z0-9.+-]+\.deb$/.test(name) && !name.includes("dbgsym"))).toBe(true);
        expect(report.packages.pyxis).toHaveLength(1);
        expect(report.packages.pyxis[0]).toMatch(/pyxis.*\.deb$/);
      },
      45 * MINUTE,
    );

    it.each(IMAGES.map((image) => [image.name, image] as const))(
      "%s",
      async (_name, image: ImageSpec) => {
        const row = rows.get(image.name)!;
        row.ref = plan.ref(image);
        const log = join(LOGS, `${image.name}.log`);
        writeFileSync(log, "");
        const cold = await buildImage(plan, image, log, 30 * MINUTE);
        row.coldSeconds = round(cold.seconds);
        const warm = await buildImage(plan, image, log, 5 * MINUTE);
        row.warmSeconds = round(warm.seconds);
        row.id = warm.id;
        row.sizeMB = round((await imageSizeBytes(row.ref)) / 1e6, 0);
        // Nothing changed: the rebuild is the same image, from the cache.
        expect(warm.id).toBe(cold.id);
        const labels = await imageLabelsOf(row.ref);
        expect(labels).toMatchObject(plan.labels(image));
        expect(labels["org.opencontainers.image.version"]).toBe(SLURM_SOURCE.version);
        expect(labels["org.opencontainers.image.licenses"]).toBe("GPL-2.0-or-later");
        expect(labels["org.opencontainers.image.base.digest"]).toBe(report.base.id);
      },
      40 * MINUTE,
    );
  });

  describe.sequential("smoke", () => {
    it.each(IMAGES.map((image) => [image.name, image] as const))(
      "%s",
      async (_name, image: ImageSpec) => {
        const row = rows.get(image.name)!;
        row.smoke = "fail";
        const result = await docker(
          ["run", "--rm", "--network", "host", "--entrypoint", "sh", plan.ref(image), "-c", smokeScript(image.name, SLURM_SOURCE.version, gpuPluginsByArch(plan.resolved.flavor))],
          { timeoutMs: 5 * MINUTE },
        );
        expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
        row.smoke = "pass";
      },
      10 * MINUTE,
    );
  });

  it(
    "pyxis images mount a tmpfs on /tmp and a fresh /proc by default, best effort, each switchable off",
    async () => {
      const mountsOf = async (name: string) => {
        const info = await dockerOk(["exec", name, "cat", "/proc/1/mountinfo"]);
        const lines = info.trim().split("\n").map((line) => line.split(" "));
        // mountinfo: field 4 is the mount point, the fstype follows the " - " separator.
        const fstype = (fields: string[]) => fields[fields.indexOf("-") + 1];
        return {
          tmpOnTmpfs: lines.some((f) => f[4] === "/tmp" && fstype(f) === "tmpfs"),
          procMounts: lines.filter((f) => f[4] === "/proc" && fstype(f) === "proc").length,
        };
      };
      const started = async (name: string, image: string, extra: string[]) => {
        containers.push(name);
        await removeContainers([name]);
        await dockerOk(["run", "-d", "--name", name, "--network", "none", "--label", "slinky-test=pyxis", ...extra, image]);
        // The image's own entrypoint took over: supervisord is PID 1.
        return waitFor(
          `${name}: supervisord as PID 1`,
          async () => {
            const r = await docker(["exec", name, "cat", "/proc/1/cmdline"]);
            return r.code === 0 && r.stdout.includes("supervisord") ? (await logsOf(name)) : undefined;
          },
          { timeoutMs: 60_000, intervalMs: 1_000 },
        );
      };
      for (const image of ["slurmd-pyxis", "login-pyxis"]) {
        const ref = plan.ref(IMAGES.find((i) => i.name === image)!);
        // With CAP_SYS_ADMIN (slurm-operator runs slurmd privileged, which this
        // machine's docker refuses: see operator.ts): both mounts by default.
        const on = `${CONTAINER_PREFIX}${image}-mounts`;
        const onLog = await started(on, ref, ["--cap-add", "SYS_ADMIN"]);
        expect(onLog).toContain("mounted a tmpfs on /tmp");
        expect(onLog).toContain("mounted a fresh /proc");
        expect(await mountsOf(on)).toEqual({ tmpOnTmpfs: true, procMounts: 2 });
        // Switched off: /tmp and /proc as the runtime made them.
        const off = `${CONTAINER_PREFIX}${image}-nomounts`;
        const offLog = await started(off, ref, ["--cap-add", "SYS_ADMIN", "-e", "PYXIS_MOUNT_TMP=false", "-e", "PYXIS_REMOUNT_PROC=false"]);
        expect(offLog).toContain("PYXIS_MOUNT_TMP=false: /tmp left as it is");
        expect(offLog).toContain("PYXIS_REMOUNT_PROC=false: /proc left as it is");
        expect(await mountsOf(off)).toEqual({ tmpOnTmpfs: false, procMounts: 1 });
        // Without CAP_SYS_ADMIN the mounts fail: logged, never fatal.
        const denied = `${CONTAINER_PREFIX}${image}-unprivileged`;
        const deniedLog = await started(denied, ref, []);
        expect(deniedLog).toMatch(/warning: could not mount a tmpfs on \/tmp, continuing without it/);
        expect(deniedLog).toMatch(/warning: could not mount a fresh \/proc, continuing without it/);
        await removeContainers([on, off, denied]);
      }
      // A wrong value is refused, naming the variable and the valid values.
      const bad = await docker(["run", "--rm", "--network", "none", "-e", "PYXIS_REMOUNT_PROC=maybe", plan.ref(IMAGES.find((i) => i.name === "slurmd-pyxis")!)]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain("PYXIS_REMOUNT_PROC must be true or false, not 'maybe'");
      report.pyxisMounts.passed = true;
    },
    10 * MINUTE,
  );

  it("pyxis images: slurm-operator's documented plugstack.conf (`include /usr/share/pyxis/*`, docs/usage/pyxis.md) loads pyxis in srun", async () => {
    for (const image of ["slurmd-pyxis", "login-pyxis"]) {
      const ref = plan.ref(IMAGES.find((i) => i.name === image)!);
      const script = [
        "set -e",
        'printf "ClusterName=x\\nSlurmctldHost=localhost\\n" >/etc/slurm/slurm.conf',
        'printf "include /usr/share/pyxis/*\\n" >/etc/slurm/plugstack.conf',
        "srun --help",
      ].join("\n");
      const r = await docker(["run", "--rm", "--network", "none", "--entrypoint", "sh", ref, "-c", script], { timeoutMs: 2 * MINUTE });
      expect(r.code, `${image}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout, image).toMatch(/--container-image=/);
    }
  });

  /** The recipe's images as the harness built them. */
  const subject: ClusterSubject = {
    label: "the recipe's images",
    line: SLURM_SOURCE.version,
    version: () => SLURM_SOURCE.version,
    ref: (target) => plan.ref(IMAGES.find((image) => image.name === target)!),
    baseImage: () => report.base.name,
  };
  miniClusterTests(subject, report.cluster);
  gpuTests(subject, () => plan.resolved.flavor, report.gpu);
  containerJobTests(subject, report.containerJobs, STAND_INS.length > 0 ? `STAND-IN ${STAND_INS.join(" and ")}` : undefined);
  operatorClusterTests(subject, report.operator);
  haTests(subject, report.ha);
  composeTests(subject, report.compose);
});
