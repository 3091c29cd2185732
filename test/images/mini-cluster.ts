/**
 * The mini cluster's checks: slurmdbd (with the test's MariaDB), slurmctld,
 * slurmd and login on loopback, every image through its own entrypoint and
 * environment contract, all started as root (plain `docker run`, compose). For
 * any set of images that keeps the contract (see ClusterSubject).
 */
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  buildMpiHello,
  buildTestDatabase,
  CONTAINER_PREFIX,
  type ClusterFiles,
  DEFAULT_PORTS,
  exec,
  logsOf,
  logsOfAll,
  MPI_DIR,
  NODE_NAME,
  PARTITION,
  pmixErrors,
  removeClusterFiles,
  removeContainers,
  requireRunning,
  startDaemon,
  waitFor,
  withDiagnosis,
  writeClusterFiles,
} from "./cluster.js";
import { docker, ENGINE_DIR } from "./harness.js";
import type { ClusterSubject } from "./operator-cluster.js";

const MINUTE = 60_000;

/** The mini cluster's containers (the operator-shaped cluster removes them first: same ports). */
export const MINI_NAMES = {
  db: `${CONTAINER_PREFIX}mariadb`,
  dbd: `${CONTAINER_PREFIX}slurmdbd`,
  ctld: `${CONTAINER_PREFIX}slurmctld`,
  slurmd: `${CONTAINER_PREFIX}slurmd`,
  login: `${CONTAINER_PREFIX}login`,
  sackd: `${CONTAINER_PREFIX}sackd`,
} as const;

export interface MiniClusterReport {
  sinfo: string;
  slurmctldUsers: string;
  srun: string;
  sacct: string;
  mpiList: string;
  mpi: string;
  passed: boolean;
}

/**
 * The mini cluster's tests, in a describe block of their own. `noMpi` names why
 * the images cannot run the MPI job (the test is then skipped by that name).
 */
export function miniClusterTests(s: ClusterSubject, report: MiniClusterReport, noMpi?: string): void {
  describe.sequential(`mini cluster of ${s.label}, every daemon started as root`, () => {
    const ports = DEFAULT_PORTS;
    const names = MINI_NAMES;
    let files: ClusterFiles | undefined;
    let started = false;
    /** Runs `checks`; a failure carries every container's log. */
    const withLogs = (checks: () => Promise<void>) => withDiagnosis(() => logsOfAll(Object.values(names)), checks);

    afterAll(async () => {
      await removeContainers(Object.values(names));
      if (files) removeClusterFiles(files);
    }, 5 * MINUTE);

    it(
      "slurmdbd records, sinfo shows the node idle, slurmctld runs as SlurmUser, srun hostname runs on the node",
      async () => {
        // Leftovers of an interrupted run would hold the ports.
        await removeContainers(Object.values(names));
        // The test database: MariaDB from the harness's base image and apt mirror.
        const db = await buildTestDatabase(s.baseImage());
        files = writeClusterFiles(join(ENGINE_DIR, "..", "slinky-cluster"), ports, db.mysqlUid);
        // The MPI job's program, compiled with mpicc outside the product images.
        const mpiHost = join(files.dir, "mpi");
        if (!noMpi) await buildMpiHello(s.baseImage(), mpiHost);
        const mpi = noMpi ? [] : [`${mpiHost}:${MPI_DIR}:ro`];
        const etc = `${files.etc}:/etc/slurm:ro`;
        const keyOnly = `${files.keyOnly}:/etc/slurm:ro`;
        const confServer = `127.0.0.1:${ports.slurmctld}`;
        const dbSocket = "/run/mysqld/slinky-test.sock";
        await startDaemon({
          name: names.db,
          image: db.ref,
          entrypoint: "mariadbd",
          mounts: [`${files.dbInit}:/etc/mysql/slinky-test-init.sql:ro`],
          args: [
            "--user=mysql",
            "--bind-address=127.0.0.1",
            `--port=${ports.mariadb}`,
            `--socket=${dbSocket}`,
            "--skip-name-resolve",
            "--init-file=/etc/mysql/slinky-test-init.sql",
          ],
        });
        const f = files;
        await withLogs(async () => {
          await waitFor(
            "the test database",
            async () => ((await exec(names.db, ["mariadb-admin", `--socket=${dbSocket}`, "ping"], 20_000)).code === 0 ? true : undefined),
            { timeoutMs: 2 * MINUTE, intervalMs: 1_000 },
          );
          // Every daemon through its image's own entrypoint and environment contract.
          await startDaemon({ name: names.dbd, image: s.ref("slurmdbd"), mounts: [`${f.dbd}:/etc/slurm:ro`] });
          await startDaemon({ name: names.ctld, image: s.ref("slurmctld"), mounts: [etc, `${f.state}:/var/spool/slurmctld`] });
          await startDaemon({
            name: names.slurmd,
            image: s.ref("slurmd"),
            mounts: [keyOnly, ...mpi],
            env: { SLURMD_OPTIONS: `-N ${NODE_NAME} --conf-server ${confServer}`, SSHD_OPTIONS: `-p ${ports.slurmdSsh}` },
          });
          // The login node reads slurm.conf itself: a configless sackd registers and
          // listens on SlurmdPort, which slurmd holds on this shared host network.
          await startDaemon({ name: names.login, image: s.ref("login"), mounts: [etc, ...mpi], env: { SSHD_OPTIONS: `-p ${ports.loginSsh}` } });
          report.sinfo = await waitFor(
            "sinfo to show the node idle",
            async () => {
              await requireRunning([names.db, names.dbd, names.ctld, names.slurmd, names.login]);
              const r = await exec(names.login, ["sinfo", "--noheader", "-N", "-o", "%N %T %P"], 30_000);
              return r.code === 0 && r.stdout.includes(`${NODE_NAME} idle ${PARTITION}`) ? r.stdout.trim() : undefined;
            },
            { timeoutMs: 3 * MINUTE },
          );
          // Started as root (docker run, compose), slurmctld runs as SlurmUser from
          // its start: Slurm >= 25.05 makes `slurmctld --systemd` fatal otherwise.
          // Every slurmctld process (with slurmscriptd) is slurm's, real and effective.
          const owners = await exec(names.ctld, ["ps", "-o", "ruser=,euser=", "-C", "slurmctld"], 30_000);
          report.slurmctldUsers = owners.stdout.trim();
          expect(owners.code, owners.stderr).toBe(0);
          const rows = owners.stdout.trim().split("\n").map((row) => row.trim().split(/\s+/).join(" "));
          expect(rows.length).toBeGreaterThan(0);
          expect(new Set(rows)).toEqual(new Set(["slurm slurm"]));
          expect(await logsOf(names.ctld)).toMatch(/daemon-exec\.sh: exec setpriv --reuid=slurm .*\/usr\/sbin\/slurmctld --systemd/);
          const srun = await exec(names.login, ["srun", "-N1", "-t", "1", "--immediate=60", "hostname"], 2 * MINUTE);
          expect(srun.code, `${srun.stdout}\n${srun.stderr}`).toBe(0);
          report.srun = srun.stdout.trim();
          expect(srun.stdout.trim()).not.toBe("");
          // The step really ran on the cluster's node, through slurmd.
          const where = await exec(names.login, ["srun", "-N1", "-t", "1", "printenv", "SLURMD_NODENAME"], 2 * MINUTE);
          expect(where.stdout.trim(), where.stderr).toBe(NODE_NAME);
          // slurmctld registered the cluster with slurmdbd, which stored both jobs.
          report.sacct = await waitFor(
            "slurmdbd to record the jobs",
            async () => {
              const r = await exec(names.login, ["sacct", "-n", "-X", "-P", "-a", "-o", "JobName,State,NodeList"], 30_000);
              const done = r.stdout.trim().split("\n").filter((row) => row.endsWith(`|COMPLETED|${NODE_NAME}`));
              return r.code === 0 && done.length >= 2 ? r.stdout.trim() : undefined;
            },
            { timeoutMs: 2 * MINUTE },
          );
          expect(report.sacct).toContain(`hostname|COMPLETED|${NODE_NAME}`);
          started = true;
          report.passed = noMpi !== undefined;
        });
      },
      20 * MINUTE,
    );

    it("the sackd image, started as root: sackd runs as slurm, and a user who cannot read the key runs sinfo through its socket", async () => {
      expect(started).toBe(true);
      {
        await removeContainers([names.sackd]);
        // slurm.conf and the key from the shared /etc/slurm: not configless, so it holds no SlurmdPort.
        await startDaemon({ name: names.sackd, image: s.ref("sackd"), mounts: [`${files!.etc}:/etc/slurm:ro`] });
        await withLogs(async () => {
          const owners = await waitFor(
            "sackd to run with its socket",
            async () => {
              await requireRunning([names.sackd]);
              const ready = await exec(names.sackd, ["test", "-S", "/run/slurm/sack.socket"]);
              const ps = await exec(names.sackd, ["ps", "-o", "ruser=,euser=", "-C", "sackd"]);
              return ready.code === 0 && ps.stdout.trim() ? ps.stdout.trim() : undefined;
            },
            { timeoutMs: MINUTE },
          );
          expect(new Set(owners.split("\n").map((row) => row.trim().split(/\s+/).join(" ")))).toEqual(new Set(["slurm slurm"]));
          const sinfo = await docker(["exec", "-u", "65534:65534", names.sackd, "sinfo", "--noheader", "-N", "-o", "%N %T"], { timeoutMs: MINUTE });
          expect(sinfo.code, `${sinfo.stdout}${sinfo.stderr}`).toBe(0);
          expect(sinfo.stdout).toContain(`${NODE_NAME} idle`);
        });
      }
      await removeContainers([names.sackd]);
    }, 5 * MINUTE);

    it.skipIf(noMpi !== undefined)(
      noMpi ? `skipped: ${noMpi}` : "a 2-rank Open MPI job runs through mpi/pmix, and no daemon logs a PMIx failure",
      async () => {
        expect(started).toBe(true);
        await withLogs(async () => {
          // MPI through Slurm: srun offers pmix, and a 2-rank Open MPI program
          // started by srun --mpi=pmix (slurmstepd's PMIx server) sees both ranks.
          const list = await exec(names.login, ["srun", "--mpi=list"], 60_000);
          report.mpiList = `${list.stdout}${list.stderr}`.trim();
          expect(list.code, report.mpiList).toBe(0);
          expect(report.mpiList).toMatch(/^\s*pmix\s*$/m);
          const run = await exec(
            names.login,
            ["srun", "--mpi=pmix", "-N1", "-n", "2", "--overcommit", "-t", "2", "--immediate=60", `${MPI_DIR}/mpi-hello`],
            3 * MINUTE,
          );
          report.mpi = `${run.stdout}${run.stderr}`.trim();
          expect(run.code, report.mpi).toBe(0);
          expect(run.stdout).toMatch(/^mpi-hello: rank 0 of 2 on /m);
          expect(run.stdout).toMatch(/^mpi-hello: rank 1 of 2 on /m);
          // No daemon reports a PMIx failure (slurmctld loads mpi/pmix at start too).
          for (const name of [names.ctld, names.slurmd, names.dbd, names.login]) {
            expect(await pmixErrors(name), `${name} logged a PMIx error`).toEqual([]);
          }
          report.passed = true;
        });
      },
      10 * MINUTE,
    );
  });
}
