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
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
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
  SLURM_SOURCE,
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
import {
  atLeast,
  changesOutsideMounts,
  hs256Jwt,
  httpGet,
  httpProbe,
  logfileSidecar,
  NOBODY_UID,
  OP,
  OP_NAMES,
  type OperatorFiles,
  type OperatorPorts,
  RECONFIGURE_CHECK,
  removeOperatorContainers,
  removeOperatorFiles,
  restApiVersion,
  SLURM_2511_FEATURES,
  SLURM_UID,
  startPodContainer,
  tcpProbe,
  writeOperatorFiles,
} from "./operator.js";
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
  slurmVersion: SLURM_SOURCE.version as string,
  engine: { dir: ENGINE_DIR, reused: false },
  base: { name: BASE_IMAGE, id: "" },
  setupSeconds: 0,
  images: [] as ImageRow[],
  packages: { seconds: 0, osSeconds: 0, slurm: [] as string[], pyxis: [] as string[] },
  cluster: { sinfo: "", slurmctldUsers: "", srun: "", sacct: "", mpiList: "", mpi: "", passed: false },
  pyxisMounts: { passed: false },
  operator: { passed: false, checks: {} as Record<string, string>, needsSlurm2511: [] as string[] },
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
    `operator-shaped cluster: ${report.operator.passed ? "passed" : "not passed"}` +
      (report.operator.needsSlurm2511.length > 0 ? ` (not run, need Slurm 25.11: ${report.operator.needsSlurm2511.join("; ")})` : ""),
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
          ["run", "--rm", "--network", "host", "--entrypoint", "sh", plan.ref(image), "-c", smokeScript(image.name, SLURM_SOURCE.version)],
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
        // Started as root (docker run, compose), slurmctld runs as SlurmUser from
        // its start: Slurm >= 25.05 makes `slurmctld --systemd` fatal otherwise.
        // Every slurmctld process (with slurmscriptd) is slurm's, real and effective.
        const owners = await exec(names.ctld, ["ps", "-o", "ruser=,euser=", "-C", "slurmctld"], 30_000);
        report.cluster.slurmctldUsers = owners.stdout.trim();
        expect(owners.code, owners.stderr).toBe(0);
        const rows = owners.stdout.trim().split("\n").map((row) => row.trim().split(/\s+/).join(" "));
        expect(rows.length).toBeGreaterThan(0);
        expect(new Set(rows)).toEqual(new Set(["slurm slurm"]));
        expect(await logsOf(names.ctld)).toMatch(/daemon-exec\.sh: exec setpriv --reuid=slurm .*\/usr\/sbin\/slurmctld --systemd/);
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

  /**
   * The images as slurm-operator v1.1.2 runs them (operator.ts says what each pod
   * gets and what stands in for Kubernetes). Runs after the mini cluster, whose
   * containers it removes first: both use the harness's ports.
   */
  describe.sequential("operator-shaped cluster (slurm-operator v1.1.2 pod specs; v1.2.1 slurm.conf, restart and preStop)", () => {
    const version = SLURM_SOURCE.version as string;
    const has2511 = atLeast(version, "25.11");
    const ports: OperatorPorts = { ...DEFAULT_PORTS, slurmrestd: Number(process.env.SLINKY_TEST_SLURMRESTD_PORT ?? 16820) };
    const n = OP_NAMES;
    let files: OperatorFiles | undefined;
    let started = false;
    const ref = (name: string) => plan.ref(IMAGES.find((image) => image.name === name)!);
    const inLogin = (command: string[], timeoutMs = 60_000) => exec(n.login, command, timeoutMs);
    const diagnose = async () =>
      (await Promise.all(Object.values(n).map(async (c) => `--- ${c}\n${await logsOf(c)}`))).join("\n");
    const note = (key: string, value: string) => {
      report.operator.checks[key] = value;
    };
    if (!has2511) report.operator.needsSlurm2511 = Object.values(SLURM_2511_FEATURES);

    afterAll(async () => {
      await removeOperatorContainers();
      if (files) removeOperatorFiles(files);
    }, 5 * MINUTE);

    it(
      "starts every pod's containers with the operator's users, groups, capabilities, args, env and mounts; every daemon stays up",
      async () => {
        containers.push(...Object.values(n));
        // The mini cluster's daemons hold the same ports.
        await removeContainers(Object.values({ a: `${CONTAINER_PREFIX}mariadb`, b: `${CONTAINER_PREFIX}slurmdbd`, c: `${CONTAINER_PREFIX}slurmctld`, d: `${CONTAINER_PREFIX}slurmd`, e: `${CONTAINER_PREFIX}login` }));
        await removeOperatorContainers();
        const db = await buildTestDatabase(report.base.name);
        files = await writeOperatorFiles(join(ENGINE_DIR, "..", "slinky-cluster"), ports, db.mysqlUid, version);
        note("slurmdbd.conf", files.slurmdbdConfNote);
        const f = files;
        const dbSocket = "/run/mysqld/slinky-test.sock";
        await startDaemon({
          name: n.db,
          image: db.ref,
          entrypoint: "mariadbd",
          mounts: [`${f.dbInit}:/etc/mysql/slinky-test-init.sql:ro`],
          args: ["--user=mysql", "--bind-address=127.0.0.1", `--port=${ports.mariadb}`, `--socket=${dbSocket}`, "--skip-name-resolve", "--init-file=/etc/mysql/slinky-test-init.sql"],
        });
        try {
          await waitFor(
            "the test database",
            async () => ((await exec(n.db, ["mariadb-admin", `--socket=${dbSocket}`, "ping"], 20_000)).code === 0 ? true : undefined),
            { timeoutMs: 2 * MINUTE, intervalMs: 1_000 },
          );
          const slurm = `${SLURM_UID}:${SLURM_UID}`;
          // accounting: uid/gid 401, fsGroup 401; /etc/slurm read-only, /run an emptyDir.
          await startPodContainer({
            name: n.dbd,
            image: ref("slurmdbd"),
            hostname: OP.accountingPod,
            user: slurm,
            fsGroup: SLURM_UID,
            mounts: [`${f.accountingEtc}:/etc/slurm:ro`, `${f.empty.dbdRun}:/run`],
          });
          // controller: the logfile sidecar first (it makes the FIFO), then slurmctld.
          await startPodContainer(
            logfileSidecar(n.ctldLog, report.base.name, OP.controllerPod, f.empty.ctldLog, "/var/log/slurm/slurmctld.log", slurm, SLURM_UID),
          );
          await waitFor("the slurmctld log FIFO", async () => (existsSync(join(f.empty.ctldLog, "slurmctld.log")) ? true : undefined), {
            timeoutMs: 30_000,
            intervalMs: 500,
          });
          await startPodContainer({
            name: n.ctld,
            image: ref("slurmctld"),
            hostname: OP.controllerPod,
            user: slurm,
            fsGroup: SLURM_UID,
            mounts: [
              `${f.controllerEtc}:/etc/slurm:ro`,
              `${f.empty.ctldRun}:/run`,
              `${f.empty.ctldState}:/var/spool/slurmctld/${OP.cluster}`,
              `${f.empty.ctldAuthSocket}:/run/slurmctld`,
              `${f.empty.ctldLog}:/var/log/slurm`,
            ],
          });
          // restapi: uid/gid 65534, fsGroup 65534, SLURM_JWT=daemon; args replace CMD.
          // (Bound to 127.0.0.1, not the operator's 0.0.0.0: host network.)
          await startPodContainer({
            name: n.restapi,
            image: ref("slurmrestd"),
            hostname: OP.restapiPod,
            user: `${NOBODY_UID}:${NOBODY_UID}`,
            fsGroup: NOBODY_UID,
            env: { SLURM_JWT: "daemon", SLURMRESTD_SECURITY: "disable_unshare_files,disable_unshare_sysv" },
            mounts: [`${f.restapiEtc}:/etc/slurm:ro`],
            args: ["-s", "openapi/slurmctld", `127.0.0.1:${ports.slurmrestd}`],
          });
          // worker: root, the operator's capabilities and args (the --conf value
          // carries literal single quotes), POD_* env; logfile sidecar first.
          // Not --privileged: this machine's docker cannot grant every capability
          // (its bounding set lacks CAP_SYS_RESOURCE); BPF is unknown to docker 20.10.
          await startPodContainer(logfileSidecar(n.slurmdLog, report.base.name, OP.workerPod, f.empty.workerLog, "/var/log/slurm/slurmd.log"));
          await waitFor("the slurmd log FIFO", async () => (existsSync(join(f.empty.workerLog, "slurmd.log")) ? true : undefined), {
            timeoutMs: 30_000,
            intervalMs: 500,
          });
          await startPodContainer({
            name: n.slurmd,
            image: ref("slurmd"),
            hostname: OP.workerPod,
            capAdd: ["NET_ADMIN", "SYS_ADMIN", "SYS_NICE"],
            securityOpt: ["seccomp=unconfined", "apparmor=unconfined"],
            env: {
              POD_TOPOLOGY: "",
              POD_CPUS: "1",
              POD_MEMORY: "1024",
              // host network only: port 22 is the host's sshd.
              SSHD_OPTIONS: `-p ${ports.slurmdSsh}`,
            },
            mounts: [`${f.workerEtc}:/etc/slurm:ro`, `${f.empty.workerLog}:/var/log/slurm`],
            args: ["-Z", "--conf-server", `${OP.controllerService}:${ports.slurmctld}`, "--conf", `'Features=${OP.nodeset}'`],
          });
          // The node registers before the login pod starts: on this shared host
          // network a registered (configless) sackd listens on SlurmdPort too and
          // would take it from a slurmd still starting (in Kubernetes each pod has
          // its own network). slurmctld's pod has the client commands.
          await waitFor(
            "the dynamic node to register idle (sinfo in the controller pod)",
            async () => {
              await requireRunning([n.db, n.dbd, n.ctld, n.ctldLog, n.restapi, n.slurmd, n.slurmdLog]);
              const r = await exec(n.ctld, ["sinfo", "--noheader", "-N", "-o", "%N %T %P"], 30_000);
              return r.code === 0 && r.stdout.includes(`${OP.workerPod} idle ${OP.nodeset}`) ? r.stdout.trim() : undefined;
            },
            { timeoutMs: 3 * MINUTE },
          );
          // login: root; /etc/slurm from its initconf; SACKD_OPTIONS; ssh material read-only, one file each.
          const hostKeyMounts = Object.entries(f.login.hostKeys).map(([file, path]) => `${path}:/etc/ssh/${file}:ro`);
          await startPodContainer({
            name: n.login,
            image: ref("login"),
            hostname: OP.loginPod,
            env: { SACKD_OPTIONS: `--conf-server ${OP.controllerService}:${ports.slurmctld}` },
            mounts: [
              `${f.loginEtc}:/etc/slurm:ro`,
              `${f.empty.loginSackd}:/run/slurm`,
              ...hostKeyMounts,
              `${f.login.sshdConfig}:/etc/ssh/sshd_config:ro`,
              `${f.login.authorizedKeys}:/root/.ssh/authorized_keys:ro`,
              `${f.login.sssdConf}:/etc/sssd/sssd.conf:ro`,
            ],
          });
          const sinfo = await waitFor(
            "sinfo in the login pod to show the dynamic node idle",
            async () => {
              await requireRunning(Object.values(n).filter((c) => c !== n.reconfigure));
              const r = await inLogin(["sinfo", "--noheader", "-N", "-o", "%N %T %P"], 30_000);
              return r.code === 0 && r.stdout.includes(`${OP.workerPod} idle ${OP.nodeset}`) ? r.stdout.trim() : undefined;
            },
            { timeoutMs: 4 * MINUTE },
          );
          note("sinfo", sinfo);
          // Every daemon runs, as the user the operator gives it.
          const owner = async (container: string, daemon: string) => {
            const r = await exec(container, ["ps", "-C", daemon, "-o", "uid=,gid="]);
            return r.stdout.trim().split("\n")[0]?.trim().replace(/\s+/g, ":") ?? "";
          };
          expect(await owner(n.ctld, "slurmctld")).toBe(slurm);
          expect(await owner(n.dbd, "slurmdbd")).toBe(slurm);
          expect(await owner(n.restapi, "slurmrestd")).toBe(`${NOBODY_UID}:${NOBODY_UID}`);
          expect(await owner(n.slurmd, "slurmd")).toBe("0:0");
          expect(await owner(n.login, "sackd")).toBe(slurm);
          expect(await owner(n.login, "sshd")).toBe("0:0");
          started = true;
        } catch (error) {
          throw new Error(`${String(error)}\n${await diagnose()}`);
        }
      },
      15 * MINUTE,
    );

    it("as 401 and 65534 the images write nothing outside the mounted directories (docker diff)", async () => {
      expect(started).toBe(true);
      expect(await changesOutsideMounts(n.ctld, ["/etc/slurm", "/run", "/run/slurmctld", `/var/spool/slurmctld/${OP.cluster}`, "/var/log/slurm"])).toEqual([]);
      expect(await changesOutsideMounts(n.dbd, ["/etc/slurm", "/run"])).toEqual([]);
      expect(await changesOutsideMounts(n.restapi, ["/etc/slurm"])).toEqual([]);
    });

    it("slurmd got the operator's --conf (quotes removed) and the POD_CPUS/POD_MEMORY specialisation", async () => {
      expect(started).toBe(true);
      const r = await inLogin(["scontrol", "show", "node", OP.workerPod]);
      expect(r.code, r.stderr).toBe(0);
      note("node", r.stdout.trim());
      expect(r.stdout).toMatch(new RegExp(`AvailableFeatures=${OP.nodeset}\\b`));
      expect(r.stdout).toMatch(/CoreSpecCount=\d+/);
      expect(r.stdout).toMatch(/MemSpecLimit=\d+/);
    });

    it("srun hostname from the login pod runs on the worker, and sacct records it", async () => {
      expect(started).toBe(true);
      const srun = await inLogin(["srun", "-N1", "-t", "1", "--immediate=60", "hostname"], 2 * MINUTE);
      expect(srun.code, `${srun.stdout}\n${srun.stderr}`).toBe(0);
      expect(srun.stdout.trim()).toBe(OP.workerPod);
      note("srun", srun.stdout.trim());
      const sacct = await waitFor(
        "slurmdbd to record the job",
        async () => {
          const r = await inLogin(["sacct", "-n", "-X", "-P", "-a", "-o", "JobName,State,NodeList"], 30_000);
          return r.code === 0 && r.stdout.includes(`hostname|COMPLETED|${OP.workerPod}`) ? r.stdout.trim() : undefined;
        },
        { timeoutMs: 2 * MINUTE },
      );
      note("sacct", sacct);
    });

    it("log files are FIFOs read by the logfile sidecars", async () => {
      expect(started).toBe(true);
      for (const [dir, file, sidecar, line] of [
        [files!.empty.ctldLog, "slurmctld.log", n.ctldLog, /slurmctld version [\d.]+ started/],
        [files!.empty.workerLog, "slurmd.log", n.slurmdLog, /slurmd version [\d.]+ started/],
      ] as const) {
        const st = await run("stat", ["-c", "%F", join(dir, file)], { timeoutMs: 10_000 });
        expect(st.stdout.trim()).toBe("fifo");
        expect(await logsOf(sidecar)).toMatch(line);
      }
    });

    it("probes: slurmrestd and slurmdbd tcpSocket, login's `test -S /run/slurm/sack.socket`", async () => {
      expect(started).toBe(true);
      expect(await tcpProbe(ports.slurmrestd)).toBe(true);
      expect(await tcpProbe(ports.slurmdbd)).toBe(true);
      const ready = await exec(n.login, ["test", "-S", "/run/slurm/sack.socket"]);
      expect(ready.code).toBe(0);
    });

    it.skipIf(!has2511)(`needs Slurm 25.11: ${SLURM_2511_FEATURES.httpProbes}`, async () => {
      expect(started).toBe(true);
      for (const port of [ports.slurmctld, ports.slurmd]) {
        for (const path of ["/livez", "/readyz"]) {
          const r = await httpProbe(`http://127.0.0.1:${port}${path}`);
          expect(r.passed, `GET :${port}${path} ${JSON.stringify(r)}`).toBe(true);
        }
      }
    });

    it.runIf(!has2511)(
      `Slurm ${version} has no HTTP /livez or /readyz (the operator's probes need 25.11): its ports answer the Slurm protocol only`,
      async () => {
        expect(started).toBe(true);
        for (const port of [ports.slurmctld, ports.slurmd]) {
          expect(await tcpProbe(port)).toBe(true);
          const r = await httpProbe(`http://127.0.0.1:${port}/livez`, 5_000);
          expect(r.passed, `GET :${port}/livez ${JSON.stringify(r)}`).toBe(false);
        }
        console.log(`[operator-shaped cluster] needs Slurm 25.11, not checked here: ${SLURM_2511_FEATURES.httpProbes}`);
      },
    );

    it(`slurmrestd (65534, SLURM_JWT=daemon) answers a ping authenticated by an HS256 JWT from jwt.key (${restApiVersion(version)})`, async () => {
      expect(started).toBe(true);
      const url = `http://127.0.0.1:${ports.slurmrestd}/slurm/${restApiVersion(version)}/ping`;
      const token = hs256Jwt(files!.jwtKey, "slurm");
      const ok = await waitFor(
        "slurmrestd to answer the ping",
        async () => {
          const r = await httpGet(url, { "X-SLURM-USER-NAME": "slurm", "X-SLURM-USER-TOKEN": token });
          return "status" in r && r.status === 200 ? r.body : undefined;
        },
        { timeoutMs: 60_000 },
      );
      const pings = (JSON.parse(ok) as { pings?: { hostname?: string; pinged?: string; responding?: boolean }[] }).pings ?? [];
      expect(pings[0]).toMatchObject({ hostname: OP.controllerPod, pinged: "UP" });
      note("restPing", JSON.stringify(pings));
      // A token signed with another key is refused.
      const forged = await httpGet(url, { "X-SLURM-USER-NAME": "slurm", "X-SLURM-USER-TOKEN": hs256Jwt(randomBytes(64), "slurm") });
      const forgedUp = "status" in forged && forged.status === 200 && /"pinged"\s*:\s*"UP"/.test(forged.body);
      expect(forgedUp, JSON.stringify(forged)).toBe(false);
    });

    it.skipIf(!has2511)(`needs Slurm 25.11: ${SLURM_2511_FEATURES.restV0044}`, async () => {
      expect(started).toBe(true);
      const r = await httpGet(`http://127.0.0.1:${ports.slurmrestd}/slurm/v0.0.44/ping`, {
        "X-SLURM-USER-NAME": "slurm",
        "X-SLURM-USER-TOKEN": hs256Jwt(files!.jwtKey, "slurm"),
      });
      expect(r).toMatchObject({ status: 200 });
    });

    it.runIf(!has2511)(`Slurm ${version} serves no REST API v0.0.44 (the operator's client needs 25.11)`, async () => {
      expect(started).toBe(true);
      const r = await httpGet(`http://127.0.0.1:${ports.slurmrestd}/slurm/v0.0.44/ping`, {
        "X-SLURM-USER-NAME": "slurm",
        "X-SLURM-USER-TOKEN": hs256Jwt(files!.jwtKey, "slurm"),
      });
      expect("status" in r && r.status === 200, JSON.stringify(r)).toBe(false);
      console.log(`[operator-shaped cluster] needs Slurm 25.11, not checked here: ${SLURM_2511_FEATURES.restV0044}`);
    });

    it(
      has2511
        ? `slurmdbd runs with the projected slurmdbd.conf (0640 root:401) — ${SLURM_2511_FEATURES.slurmdbdConf0640}`
        : `Slurm ${version}'s slurmdbd refuses the projected 0640 root:401 slurmdbd.conf (needs Slurm 25.11: ${SLURM_2511_FEATURES.slurmdbdConf0640})`,
      async () => {
        expect(started).toBe(true);
        if (has2511) {
          // The cluster above already ran slurmdbd with the projected file.
          expect(files!.accountingEtc).toBe(files!.accountingEtcProjected);
          return;
        }
        const r = await docker(
          [
            "run", "--rm", "--network", "none", "--hostname", OP.accountingPod,
            "--user", `${SLURM_UID}:${SLURM_UID}`, "--group-add", String(SLURM_UID),
            "-v", `${files!.accountingEtcProjected}:/etc/slurm:ro`, ref("slurmdbd"),
          ],
          { timeoutMs: 60_000 },
        );
        expect(r.code).not.toBe(0);
        expect(`${r.stdout}${r.stderr}`).toMatch(/slurmdbd\.conf.*(should be 600|not owned by SlurmUser|owned by)/i);
        console.log(`[operator-shaped cluster] ${files!.slurmdbdConfNote}`);
      },
    );

    it("the login pod serves ssh with its mounted host key", async () => {
      expect(started).toBe(true);
      const scan = await run("ssh-keyscan", ["-t", "ed25519", "-p", String(ports.loginSsh), "127.0.0.1"], { timeoutMs: 30_000 });
      const served = scan.stdout.trim().split(/\s+/).slice(1, 3).join(" ");
      expect(served).toBe(files!.login.ed25519Pub.split(/\s+/).slice(0, 2).join(" "));
    });

    it("the reconfigure sidecar, from the slurmctld image as 401 under tini, has its tools and reconfigures slurmctld", async () => {
      expect(started).toBe(true);
      await startPodContainer({
        name: n.reconfigure,
        image: ref("slurmctld"),
        hostname: OP.controllerPod,
        user: `${SLURM_UID}:${SLURM_UID}`,
        fsGroup: SLURM_UID,
        mounts: [`${files!.controllerEtc}:/etc/slurm:ro`, `${files!.empty.ctldAuthSocket}:/run/slurmctld:ro`],
        entrypoint: "tini",
        args: ["-g", "--", "bash", "-c", RECONFIGURE_CHECK],
      });
      const exit = await dockerOk(["wait", n.reconfigure], { timeoutMs: 2 * MINUTE });
      const out = await logsOf(n.reconfigure);
      expect(exit.trim(), out).toBe("0");
      expect(out).toContain(`reconfigured as uid ${SLURM_UID}`);
      // slurmctld came back from the reconfigure (it re-executes itself) and serves again.
      const back = await waitFor(
        "slurmctld to answer after the reconfigure",
        async () => {
          await requireRunning([n.ctld]);
          const r = await inLogin(["scontrol", "ping"], 30_000);
          return r.code === 0 && /is UP/.test(r.stdout) ? r.stdout.trim() : undefined;
        },
        { timeoutMs: 2 * MINUTE },
      );
      note("afterReconfigure", back);
    });

    it("v1.2.1 without inplaceReconfigure (its default): a config change restarts slurmctld, which cold-starts from its StateSaveLocation", async () => {
      expect(started).toBe(true);
      // A held job: it is in the saved state only, and must be there after the restart.
      const held = await inLogin(["sbatch", "--parsable", "-H", "-J", "restart-probe", "--wrap", "true"], 30_000);
      expect(held.code, held.stderr).toBe(0);
      const jobId = held.stdout.trim().split(";")[0]!;
      // The operator's config-hash annotation changes and the pod restarts: here the projected file changes and the container restarts.
      appendFileSync(join(files!.controllerEtc, "slurm.conf"), "# slurm-operator: configuration changed\n");
      await dockerOk(["restart", "--time", "30", n.ctld], { timeoutMs: 2 * MINUTE });
      const back = await waitFor(
        "slurmctld to answer after its restart",
        async () => {
          await requireRunning([n.ctld, n.ctldLog]);
          const r = await inLogin(["scontrol", "ping"], 30_000);
          return r.code === 0 && /is UP/.test(r.stdout) ? r.stdout.trim() : undefined;
        },
        { timeoutMs: 2 * MINUTE },
      );
      note("afterRestart", back);
      // It read back what it saved: the held job, the worker's node, and its log (the FIFO's sidecar) says so.
      const job = await inLogin(["squeue", "--noheader", "-j", jobId, "-o", "%i %T %r"], 30_000);
      expect(job.stdout.trim(), job.stderr).toMatch(new RegExp(`^${jobId} PENDING (JobHeldUser|JobHeldAdmin)$`));
      const nodes = await inLogin(["sinfo", "--noheader", "-N", "-o", "%N"], 30_000);
      expect(nodes.stdout).toContain(OP.workerPod);
      const log = await docker(["logs", n.ctldLog], { timeoutMs: 30_000 });
      const recovered = /Recovered information about [1-9]\d* jobs/.exec(`${log.stdout}${log.stderr}`)?.[0];
      expect(recovered, "slurmctld's log after the restart").toBeDefined();
      note("recoveredAfterRestart", `${recovered}; ${job.stdout.trim()}`);
      await inLogin(["scancel", jobId], 30_000);
    });

    it("v1.2.1's preStop only sets the node DOWN; the restarted slurmd re-registers against that record and runs a job once resumed", async () => {
      expect(started).toBe(true);
      const startTime = async () => /SlurmdStartTime=(\S+)/.exec((await inLogin(["scontrol", "show", "node", OP.workerPod], 30_000)).stdout)?.[1] ?? "";
      const before = await startTime();
      const preStop = await exec(n.slurmd, ["/usr/bin/sh", "-c", "scontrol update nodename=$(hostname) state=down reason='slurm-operator: Pod is terminating'"]);
      expect(preStop.code, `${preStop.stdout}${preStop.stderr}`).toBe(0);
      // The pod's container restarts: the same image, entrypoint and arguments, its node record kept.
      await dockerOk(["restart", "--time", "30", n.slurmd], { timeoutMs: 2 * MINUTE });
      const registered = await waitFor(
        "the restarted slurmd to register against its DOWN record",
        async () => {
          await requireRunning([n.slurmd]);
          const r = await inLogin(["scontrol", "show", "node", OP.workerPod], 30_000);
          const state = /State=(\S+)/.exec(r.stdout)?.[1] ?? "";
          const start = /SlurmdStartTime=(\S+)/.exec(r.stdout)?.[1] ?? "";
          return r.code === 0 && start !== before && !state.includes("NOT_RESPONDING") ? `${state} SlurmdStartTime=${start}` : undefined;
        },
        { timeoutMs: 2 * MINUTE },
      );
      note("afterRestartDown", registered);
      const resume = await inLogin(["scontrol", "update", `nodename=${OP.workerPod}`, "state=resume"], 30_000);
      // v1.2.1's slurm.conf has no ReturnToService: the node an admin set DOWN stays DOWN until resumed
      // (a node already back in service would answer that it is not down).
      expect(resume.code === 0 || /not down|Invalid node state/i.test(resume.stderr), resume.stderr).toBe(true);
      const job = await inLogin(["srun", "-N1", "-t", "1", "--immediate=60", "printenv", "SLURMD_NODENAME"], 2 * MINUTE);
      expect(job.stdout.trim(), job.stderr).toBe(OP.workerPod);
    });

    it("slurmd's preStop command drains the node and removes it", async () => {
      expect(started).toBe(true);
      const preStop = await exec(n.slurmd, [
        "/usr/bin/sh",
        "-c",
        "scontrol update nodename=$(hostname) state=down reason='slurm-operator: Pod is terminating' && scontrol delete nodename=$(hostname);",
      ]);
      expect(preStop.code, `${preStop.stdout}${preStop.stderr}`).toBe(0);
      const gone = await waitFor(
        "the node to leave the cluster",
        async () => {
          const r = await inLogin(["sinfo", "--noheader", "-N", "-o", "%N %T"], 30_000);
          return r.code === 0 && !r.stdout.includes(OP.workerPod) ? r.stdout.trim() || "(no nodes)" : undefined;
        },
        { timeoutMs: 60_000 },
      );
      note("afterPreStop", gone);
      report.operator.passed = true;
    });
  });
});
