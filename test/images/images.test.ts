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
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGES, type ImageSpec } from "../../src/catalog.js";
import { smokeScript } from "../../src/smoke.js";
import {
  buildMpiHello,
  buildTestDatabase,
  CONTAINER_PREFIX,
  type ClusterFiles,
  DEFAULT_PORTS,
  exec,
  logsOf,
  MPI_DIR,
  NODE_NAME,
  PARTITION,
  pmixErrors,
  removeClusterFiles,
  removeContainers,
  requireRunning,
  startDaemon,
  waitFor,
  writeClusterFiles,
} from "./cluster.js";
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
  run,
  SLURM_STANDIN,
  serveFiles,
  slurmSource,
  startEngine,
  stopEngine,
} from "./harness.js";
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
const rows = new Map<string, ImageRow>(
  IMAGES.map((image) => [
    image.name,
    { image: image.name, ref: "", id: null, sizeMB: null, coldSeconds: null, warmSeconds: null, smoke: null },
  ]),
);
const report = {
  flavor: "debian13",
  slurmVersion: SLURM_STANDIN.version as string,
  engine: { dir: ENGINE_DIR, reused: false },
  base: { name: BASE_IMAGE, id: "" },
  setupSeconds: 0,
  images: [] as ImageRow[],
  packages: { seconds: 0, osSeconds: 0, slurm: [] as string[], pyxis: [] as string[] },
  cluster: { sinfo: "", srun: "", sacct: "", mpiList: "", mpi: "", passed: false },
  pyxisMounts: { passed: false },
  totalSeconds: 0,
};

let engine: Engine | undefined;
let server: FileServer | undefined;
let plan: BuildPlan;
let clusterFiles: ClusterFiles | undefined;
const containers: string[] = [];

const round = (value: number, digits = 1) => Number(value.toFixed(digits));

beforeAll(async () => {
  mkdirSync(LOGS, { recursive: true });
  engine = await startEngine();
  report.engine.reused = engine.startedPid === null;
  report.base.id = await ensureBase(BASE_IMAGE);
  const slurmPath = await slurmSource();
  const served = await standInSources(join(INPUTS_DIR, "standins"));
  server = await serveFiles({ [SLURM_STANDIN.file]: slurmPath, ...served.files }, FILES_PORT);
  const sources: HarnessSources = {
    base: { name: BASE_IMAGE, id: report.base.id },
    slurm: { version: SLURM_STANDIN.version, url: server.url(SLURM_STANDIN.file), sha256: SLURM_STANDIN.sha256 },
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
  await attempt(() => (clusterFiles ? removeClusterFiles(clusterFiles) : undefined));
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
    `debian13 images, Slurm ${report.slurmVersion} (engine ${report.engine.reused ? "reused" : "started"}, ` +
      `setup ${report.setupSeconds} s, total ${report.totalSeconds} s)`,
    line(header),
    ...cells.map(line),
    `packages: ${report.packages.seconds} s (OS layers alongside: ${report.packages.osSeconds} s)`,
    `mini cluster: ${report.cluster.passed ? "passed" : "not passed"}`,
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
        // Exactly the package files the images' stages name, each Package.deb.
        expect(report.packages.slurm).toEqual(expect.arrayContaining(["slurm-smd.deb", "slurm-smd-client.deb", "slurm-smd-slurmd.deb"]));
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
        expect(labels["org.opencontainers.image.version"]).toBe(SLURM_STANDIN.version);
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
          ["run", "--rm", "--network", "host", "--entrypoint", "sh", plan.ref(image), "-c", smokeScript(image.name, SLURM_STANDIN.version)],
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

  it(
    "mini cluster: slurmdbd records, sinfo shows the node idle, srun hostname runs on it, a 2-rank Open MPI job runs through mpi/pmix",
    async () => {
      const ports = DEFAULT_PORTS;
      const ref = (name: string) => plan.ref(IMAGES.find((image) => image.name === name)!);
      const names = {
        db: `${CONTAINER_PREFIX}mariadb`,
        dbd: `${CONTAINER_PREFIX}slurmdbd`,
        ctld: `${CONTAINER_PREFIX}slurmctld`,
        slurmd: `${CONTAINER_PREFIX}slurmd`,
        login: `${CONTAINER_PREFIX}login`,
      };
      // Leftovers of an interrupted run would hold the ports.
      await removeContainers(Object.values(names));
      containers.push(...Object.values(names));
      // The test database: MariaDB from the same base image and apt mirror.
      const db = await buildTestDatabase(report.base.name);
      clusterFiles = writeClusterFiles(join(ENGINE_DIR, "..", "slinky-cluster"), ports, db.mysqlUid);
      // The MPI job's program, compiled with mpicc outside the product images.
      const mpiHost = join(clusterFiles.dir, "mpi");
      await buildMpiHello(report.base.name, mpiHost);
      const mpi = `${mpiHost}:${MPI_DIR}:ro`;
      const etc = `${clusterFiles.etc}:/etc/slurm:ro`;
      const keyOnly = `${clusterFiles.keyOnly}:/etc/slurm:ro`;
      const confServer = `127.0.0.1:${ports.slurmctld}`;
      const dbSocket = "/run/mysqld/slinky-test.sock";
      await startDaemon({
        name: names.db,
        image: db.ref,
        entrypoint: "mariadbd",
        mounts: [`${clusterFiles.dbInit}:/etc/mysql/slinky-test-init.sql:ro`],
        args: [
          "--user=mysql",
          "--bind-address=127.0.0.1",
          `--port=${ports.mariadb}`,
          `--socket=${dbSocket}`,
          "--skip-name-resolve",
          "--init-file=/etc/mysql/slinky-test-init.sql",
        ],
      });
      const diagnose = async () =>
        (await Promise.all(Object.values(names).map(async (n) => `--- ${n}\n${await logsOf(n)}`))).join("\n");
      try {
        await waitFor(
          "the test database",
          async () => ((await exec(names.db, ["mariadb-admin", `--socket=${dbSocket}`, "ping"], 20_000)).code === 0 ? true : undefined),
          { timeoutMs: 2 * MINUTE, intervalMs: 1_000 },
        );
        // Every daemon through its image's own entrypoint and environment contract.
        await startDaemon({ name: names.dbd, image: ref("slurmdbd"), mounts: [`${clusterFiles.dbd}:/etc/slurm:ro`] });
        await startDaemon({
          name: names.ctld,
          image: ref("slurmctld"),
          mounts: [etc, `${clusterFiles.state}:/var/spool/slurmctld`],
        });
        await startDaemon({
          name: names.slurmd,
          image: ref("slurmd"),
          mounts: [keyOnly, mpi],
          env: {
            SLURMD_OPTIONS: `-N ${NODE_NAME} --conf-server ${confServer}`,
            SSHD_OPTIONS: `-p ${ports.slurmdSsh}`,
          },
        });
        // The login node reads slurm.conf itself: a configless sackd registers and
        // listens on SlurmdPort, which slurmd holds on this shared host network.
        await startDaemon({
          name: names.login,
          image: ref("login"),
          mounts: [etc, mpi],
          env: { SSHD_OPTIONS: `-p ${ports.loginSsh}` },
        });
        report.cluster.sinfo = await waitFor(
          "sinfo to show the node idle",
          async () => {
            await requireRunning(Object.values(names));
            const r = await exec(names.login, ["sinfo", "--noheader", "-N", "-o", "%N %T %P"], 30_000);
            return r.code === 0 && r.stdout.includes(`${NODE_NAME} idle ${PARTITION}`) ? r.stdout.trim() : undefined;
          },
          { timeoutMs: 3 * MINUTE },
        );
        const srun = await exec(names.login, ["srun", "-N1", "-t", "1", "--immediate=60", "hostname"], 2 * MINUTE);
        expect(srun.code, `${srun.stdout}\n${srun.stderr}`).toBe(0);
        report.cluster.srun = srun.stdout.trim();
        expect(srun.stdout.trim()).not.toBe("");
        // The step really ran on the cluster's node, through slurmd.
        const where = await exec(names.login, ["srun", "-N1", "-t", "1", "printenv", "SLURMD_NODENAME"], 2 * MINUTE);
        expect(where.stdout.trim(), where.stderr).toBe(NODE_NAME);
        // slurmctld registered the cluster with slurmdbd, which stored both jobs.
        report.cluster.sacct = await waitFor(
          "slurmdbd to record the jobs",
          async () => {
            const r = await exec(names.login, ["sacct", "-n", "-X", "-P", "-a", "-o", "JobName,State,NodeList"], 30_000);
            const rows = r.stdout.trim().split("\n");
            const done = rows.filter((row) => row.endsWith(`|COMPLETED|${NODE_NAME}`));
            return r.code === 0 && done.length >= 2 ? r.stdout.trim() : undefined;
          },
          { timeoutMs: 2 * MINUTE },
        );
        expect(report.cluster.sacct).toContain(`hostname|COMPLETED|${NODE_NAME}`);
        // MPI through Slurm: srun offers pmix, and a 2-rank Open MPI program
        // started by srun --mpi=pmix (slurmstepd's PMIx server) sees both ranks.
        const list = await exec(names.login, ["srun", "--mpi=list"], 60_000);
        report.cluster.mpiList = `${list.stdout}${list.stderr}`.trim();
        expect(list.code, report.cluster.mpiList).toBe(0);
        expect(report.cluster.mpiList).toMatch(/^\s*pmix\s*$/m);
        const run = await exec(
          names.login,
          ["srun", "--mpi=pmix", "-N1", "-n", "2", "--overcommit", "-t", "2", "--immediate=60", `${MPI_DIR}/mpi-hello`],
          3 * MINUTE,
        );
        report.cluster.mpi = `${run.stdout}${run.stderr}`.trim();
        expect(run.code, report.cluster.mpi).toBe(0);
        expect(run.stdout).toMatch(/^mpi-hello: rank 0 of 2 on /m);
        expect(run.stdout).toMatch(/^mpi-hello: rank 1 of 2 on /m);
        // No daemon reports a PMIx failure (slurmctld loads mpi/pmix at start too).
        for (const name of [names.ctld, names.slurmd, names.dbd, names.login]) {
          expect(await pmixErrors(name), `${name} logged a PMIx error`).toEqual([]);
        }
        report.cluster.passed = true;
      } catch (error) {
        throw new Error(`${String(error)}\n${await diagnose()}`);
      }
    },
    20 * MINUTE,
  );

});
