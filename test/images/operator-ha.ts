/**
 * slurm-operator's highly available controllers (main, chart 1.3.0-rc1), with
 * this project's images: one StatefulSet of two controller pods, one
 * `SlurmctldHost` line per replica, `SlurmctldAddr` naming the controller
 * Service, the StateSaveLocation shared by both (a ReadWriteMany volume: one
 * host directory mounted in both), each pod started as the operator starts it
 * (uid 401, read-only /etc/slurm, empty /run). Then the primary is stopped
 * with a job running and one pending, first with SIGTERM (Kubernetes' stop),
 * then with SIGKILL, and brought back each time.
 *
 * What stands in for Kubernetes here, beyond operator.ts's:
 * - Pod addresses: every pod has a loopback address of its own (127.0.0.2 and
 *   up, `--add-host`), and slurm.conf says `CommunicationParameters=NoCtldInAddrAny`
 *   so that each slurmctld binds only its own: on one host network the two
 *   cannot both listen on SlurmctldPort's wildcard address. (The other daemons
 *   keep the wildcard: a dynamic node's address is where its registration
 *   came from, the Service's proxy, 127.0.0.1.)
 * - The controller Service: a socat proxy on the Service's address, started
 *   from the slurmctld image, forwarding to one controller pod. The operator
 *   points the Service at the pod its ping finds in control; this test does
 *   the same with `scontrol ping` (the first controller that is UP) and
 *   restarts the proxy when that changes.
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildTestDatabase, DEFAULT_PORTS, exec, logsOf, logsOfAll, removeContainers, requireRunning, startDaemon, waitFor, withDiagnosis } from "./cluster.js";
import { dockerOk, ENGINE_DIR, REPO } from "./harness.js";
import { atLeast, controllerContainer, emptyDir, OP, type OperatorFiles, type OperatorPorts, removeOperatorFiles, SLURM_UID, startPodContainer, writeOperatorFiles, writeOwned } from "./operator.js";
import type { ClusterSubject } from "./operator-cluster.js";
import { httpProbe } from "./probes.js";

const MINUTE = 60_000;
const LOGS = join(REPO, "out", "ha-logs");
/** SlurmctldTimeout of this cluster (seconds): how long the backup waits before it takes over. */
export const HA_TIMEOUT = 10;
/** The bound this test allows on top of SlurmctldTimeout for the backup to take control (seconds). */
export const TAKEOVER_BOUND = 30;

const PREFIX = "slinky-test-ha-";
export const HA_NAMES = {
  db: `${PREFIX}mariadb`,
  dbd: `${PREFIX}slurmdbd`,
  ctl: [`${PREFIX}slurmctld-0`, `${PREFIX}slurmctld-1`],
  service: `${PREFIX}controller-service`,
  slurmd: `${PREFIX}slurmd`,
  login: `${PREFIX}login`,
} as const;

/** Each pod's address, and the Service's. */
const ADDR = {
  ctl: ["127.0.0.2", "127.0.0.3"],
  service: "127.0.0.4",
  worker: "127.0.0.5",
  login: "127.0.0.6",
  accounting: "127.0.0.1",
} as const;
const ctlPod = (i: number) => `slurm-controller-${i}`;
const ctlFqdn = (i: number) => `${ctlPod(i)}.slurm-controller-internal`;

/** --add-host entries: the pods' own names, the headless Service's per-pod names, the Services. */
export const HA_HOSTS = [
  ...[0, 1].flatMap((i) => [`${ctlPod(i)}:${ADDR.ctl[i]}`, `${ctlFqdn(i)}:${ADDR.ctl[i]}`]),
  `${OP.controllerService}:${ADDR.service}`,
  `${OP.accountingPod}:${ADDR.accounting}`,
  `${OP.accountingService}:${ADDR.accounting}`,
  `${OP.workerPod}:${ADDR.worker}`,
  `${OP.loginPod}:${ADDR.login}`,
];

/**
 * slurm.conf as main's controller builder renders it with `ha.enabled` and one
 * backup (one SlurmctldHost per replica, SlurmctldAddr), from the harness's
 * operator-shaped slurm.conf; plus this host's NoInAddrAny and the timeout.
 */
export function haSlurmConf(single: string): string {
  const lines = single.split("\n").flatMap((line) => {
    if (line.startsWith("SlurmctldHost=")) {
      return [0, 1].map((i) => `SlurmctldHost=${ctlPod(i)}(${ctlFqdn(i)})`).concat([`SlurmctldAddr=${OP.controllerService}`]);
    }
    if (line.startsWith("SlurmctldTimeout=")) return [`SlurmctldTimeout=${HA_TIMEOUT}`];
    return [line];
  });
  return `${lines.join("\n").trimEnd()}\nCommunicationParameters=NoCtldInAddrAny\n`;
}

/** Scripts as main's prolog/epilog ConfigMaps carry them: each leaves the job's id in a file of its pod's /run. */
export const PROLOG_SCRIPTS: Record<string, string> = {
  "prolog-slurmctld-mark.sh": '#!/bin/sh\necho "$SLURM_JOB_ID" >>/run/prolog-slurmctld.jobs\n',
  "epilog-slurmctld-mark.sh": '#!/bin/sh\necho "$SLURM_JOB_ID" >>/run/epilog-slurmctld.jobs\n',
  "prolog-mark.sh": '#!/bin/sh\necho "$SLURM_JOB_ID" >>/run/prolog.jobs\n',
  "epilog-mark.sh": '#!/bin/sh\necho "$SLURM_JOB_ID" >>/run/epilog.jobs\n',
};
/** slurm.conf's lines for them, as controller_config.go writes them (slurmctld's by path, the nodes' by file name). */
const PROLOG_CONF = [
  "PrologSlurmctld=/etc/slurm/prolog-slurmctld-mark.sh",
  "EpilogSlurmctld=/etc/slurm/epilog-slurmctld-mark.sh",
  "Prolog=prolog-mark.sh",
  "Epilog=epilog-mark.sh",
  "",
].join("\n");

/** "primary"/"backup" and UP/DOWN per controller, from `scontrol ping`. */
export function parsePing(output: string): { host: string; up: boolean }[] {
  return [...output.matchAll(/Slurmctld\((?:primary|backup\d*)\) at (\S+) is (UP|DOWN)/g)].map((m) => ({ host: m[1]!, up: m[2] === "UP" }));
}

export interface HaReport {
  /** Seconds from the primary's stop to the backup's "taking over" line, and to the first job run through the Service. */
  failover: Record<"sigterm" | "sigkill", { takeover: number; served: number } | null>;
  /** Seconds from the primary's start to its being in control again and serving a job. */
  failback: Record<"sigterm" | "sigkill", number | null>;
  ping: string;
  prologs: string;
  sacct: string;
  passed: boolean;
}

/** The HA tests, in a describe block of their own. */
export function haTests(s: ClusterSubject, report: HaReport): void {
  describe.sequential(`highly available controllers of ${s.label} (slurm-operator main: two replicas, SlurmctldAddr, a shared StateSaveLocation)`, () => {
    const ports: OperatorPorts = { ...DEFAULT_PORTS, slurmrestd: 16820 };
    const n = HA_NAMES;
    let f: OperatorFiles | undefined;
    let ctlDirs: { run: string; socket: string; log: string }[] = [];
    let state = "";
    let started = false;
    let serving = -1;
    const all = () => [n.db, n.dbd, ...n.ctl, n.service, n.slurmd, n.login];
    const logFile = (i: number) => join(ctlDirs[i]!.log, "slurmctld.log");
    const ctlLog = (i: number) => (existsSync(logFile(i)) ? readFileSync(logFile(i), "utf8") : "");
    const diagnose = async () =>
      `${await logsOfAll(all())}\n${[0, 1].map((i) => `--- ${logFile(i)}\n${ctlLog(i).split("\n").slice(-40).join("\n")}`).join("\n")}`;
    const inLogin = (command: string[], timeoutMs = 60_000) => exec(n.login, command, timeoutMs);

    afterAll(async () => {
      // The controllers' whole logs and the containers' stay in out/ha-logs for a failure's reader.
      mkdirSync(LOGS, { recursive: true });
      for (const i of [0, 1]) if (ctlDirs[i]) writeFileSync(join(LOGS, `slurmctld-${i}.log`), ctlLog(i));
      for (const name of all()) writeFileSync(join(LOGS, `${name}.log`), await logsOf(name));
      await removeContainers(all());
      if (f) removeOperatorFiles(f);
    }, 5 * MINUTE);

    const startController = async (i: number) => {
      await removeContainers([n.ctl[i]!]);
      const d = ctlDirs[i]!;
      await startPodContainer(controllerContainer(n.ctl[i]!, s.ref("slurmctld"), ctlPod(i), f!.controllerEtc, { run: d.run, authSocket: d.socket, log: d.log, state }, HA_HOSTS));
    };
    /** The Service's endpoint: the proxy forwarding to controller `i`. */
    const pointService = async (i: number) => {
      await removeContainers([n.service]);
      await startDaemon({
        name: n.service,
        image: s.ref("slurmctld"),
        entrypoint: "socat",
        mounts: [],
        args: [`TCP-LISTEN:${ports.slurmctld},bind=${ADDR.service},fork,reuseaddr`, `TCP:${ADDR.ctl[i]}:${ports.slurmctld}`],
      });
      serving = i;
    };
    /** `scontrol ping` from a controller pod that runs. */
    const ping = async () => {
      for (const name of n.ctl) {
        const r = await exec(name, ["scontrol", "ping"], 30_000);
        if (r.code === 0 || /Slurmctld\(/.test(r.stdout)) return parsePing(r.stdout);
      }
      return [];
    };
    /** The operator's part: the Service follows the first controller that answers. */
    const followActive = async () => {
      const up = (await ping()).findIndex((c) => c.up);
      if (up >= 0 && up !== serving) await pointService(up);
      return up;
    };
    const squeueState = async (id: string) => (await inLogin(["squeue", "-h", "-j", id, "-o", "%T"], 30_000)).stdout.trim();
    const submit = async (args: string[]) => {
      const r = await inLogin(["sbatch", "--parsable", ...args], 60_000);
      expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
      return r.stdout.trim().split(";")[0]!;
    };

    it(
      "two controllers as the operator runs them: scontrol ping reports primary UP and backup UP, the node registers through the Service, a job's prolog/epilog ConfigMap scripts run",
      async () => {
        await removeContainers(all());
        const db = await buildTestDatabase(s.baseImage());
        f = await writeOperatorFiles(join(ENGINE_DIR, "..", "slinky-cluster"), ports, db.mysqlUid, s.version());
        // main's prolog/epilog ConfigMaps: mounted in /etc/slurm like every config file (0650 root:401),
        // named in slurm.conf as its controller builder names them.
        const files: Record<string, string> = {
          "slurm.conf": `${haSlurmConf(readFileSync(join(f.controllerEtc, "slurm.conf"), "utf8"))}${PROLOG_CONF}`,
          ...PROLOG_SCRIPTS,
        };
        for (const [name, content] of Object.entries(files)) writeOwned(join(f.controllerEtc, name), content, 0o650, 0, SLURM_UID);
        // The ReadWriteMany volume both replicas mount, and each pod's own emptyDirs (2777 root:401).
        state = f.empty.ctldState;
        ctlDirs = [0, 1].map((i) => {
          const [run, socket, log] = ["run", "authsocket", "log"].map((name) => join(f!.dir, "ha", `controller-${i}-${name}`));
          for (const dir of [run!, socket!, log!]) emptyDir(dir, SLURM_UID);
          return { run: run!, socket: socket!, log: log! };
        });
        await withDiagnosis(diagnose, async () => {
          const dbSocket = "/run/mysqld/slinky-test.sock";
          await startDaemon({
            name: n.db,
            image: db.ref,
            entrypoint: "mariadbd",
            mounts: [`${f!.dbInit}:/etc/mysql/slinky-test-init.sql:ro`],
            args: ["--user=mysql", "--bind-address=127.0.0.1", `--port=${ports.mariadb}`, `--socket=${dbSocket}`, "--skip-name-resolve", "--init-file=/etc/mysql/slinky-test-init.sql"],
          });
          await waitFor("the test database", async () => ((await exec(n.db, ["mariadb-admin", `--socket=${dbSocket}`, "ping"], 20_000)).code === 0 ? true : undefined), {
            timeoutMs: 2 * MINUTE,
            intervalMs: 1_000,
          });
          await startPodContainer({
            name: n.dbd,
            image: s.ref("slurmdbd"),
            hostname: OP.accountingPod,
            hosts: HA_HOSTS,
            user: `${SLURM_UID}:${SLURM_UID}`,
            fsGroup: SLURM_UID,
            mounts: [`${f!.accountingEtc}:/etc/slurm:ro`, `${f!.empty.dbdRun}:/run`],
          });
          await startController(0);
          await startController(1);
          await pointService(0);
          await startPodContainer({
            name: n.slurmd,
            image: s.ref("slurmd"),
            hostname: OP.workerPod,
            hosts: HA_HOSTS,
            capAdd: ["NET_ADMIN", "SYS_ADMIN", "SYS_NICE"],
            securityOpt: ["seccomp=unconfined", "apparmor=unconfined"],
            env: { POD_CPUS: "1", POD_MEMORY: "1024", SSHD_OPTIONS: `-p ${ports.slurmdSsh}` },
            mounts: [`${f!.workerEtc}:/etc/slurm:ro`, `${f!.empty.workerLog}:/var/log/slurm`],
            args: ["-Z", "--conf-server", `${OP.controllerService}:${ports.slurmctld}`, "--conf", `'Features=${OP.nodeset}'`],
          });
          await waitFor(
            "the node to register idle",
            async () => {
              await requireRunning([n.db, n.dbd, ...n.ctl, n.service, n.slurmd]);
              const r = await exec(n.ctl[0], ["sinfo", "--noheader", "-N", "-o", "%N %T"], 30_000);
              return r.stdout.includes(`${OP.workerPod} idle`) ? true : undefined;
            },
            { timeoutMs: 3 * MINUTE },
          );
          await startPodContainer({
            name: n.login,
            image: s.ref("login"),
            hostname: OP.loginPod,
            hosts: HA_HOSTS,
            env: { SACKD_OPTIONS: `--conf-server ${OP.controllerService}:${ports.slurmctld}` },
            mounts: [
              `${f!.loginEtc}:/etc/slurm:ro`,
              `${f!.empty.loginSackd}:/run/slurm`,
              ...Object.entries(f!.login.hostKeys).map(([file, path]) => `${path}:/etc/ssh/${file}:ro`),
              `${f!.login.sshdConfig}:/etc/ssh/sshd_config:ro`,
              `${f!.login.authorizedKeys}:/root/.ssh/authorized_keys:ro`,
              `${f!.login.sssdConf}:/etc/sssd/sssd.conf:ro`,
            ],
          });
          await waitFor("sinfo from the login pod", async () => ((await inLogin(["sinfo", "-h", "-N", "-o", "%N %T"], 30_000)).stdout.includes(`${OP.workerPod} idle`) ? true : undefined), {
            timeoutMs: 2 * MINUTE,
          });
          const pinged = await ping();
          report.ping = pinged.map((c) => `${c.host} ${c.up ? "UP" : "DOWN"}`).join(", ");
          expect(pinged).toEqual([
            { host: ctlPod(0), up: true },
            { host: ctlPod(1), up: true },
          ]);
          if (atLeast(s.line, "25.11")) {
            // main's readiness with more than one replica: /livez on both; /readyz on the primary.
            for (const i of [0, 1]) expect((await httpProbe(`http://${ADDR.ctl[i]}:${ports.slurmctld}/livez`)).passed, `livez ${i}`).toBe(true);
            expect((await httpProbe(`http://${ADDR.ctl[0]}:${ports.slurmctld}/readyz`)).passed).toBe(true);
          }
          const r = await inLogin(["srun", "-N1", "-t", "1", "--immediate=60", "hostname"], 2 * MINUTE);
          expect(r.code, r.stderr).toBe(0);
          // The job's prologs and epilogs ran: slurmctld's in the controller pod, the node's (sent
          // to the configless slurmd with its configuration) in the worker pod.
          const job = (await inLogin(["sacct", "-n", "-X", "-P", "-o", "JobID", "--name", "hostname"], 30_000)).stdout.trim().split("\n").at(-1)!;
          report.prologs = await waitFor(
            "the job's prologs and epilogs",
            async () => {
              const read = async (name: string, file: string) => (await exec(name, ["cat", file], 10_000)).stdout.split("\n");
              const ran = [
                ...(await Promise.all(["/run/prolog-slurmctld.jobs", "/run/epilog-slurmctld.jobs"].map((file) => read(n.ctl[0], file)))),
                ...(await Promise.all(["/run/prolog.jobs", "/run/epilog.jobs"].map((file) => read(n.slurmd, file)))),
              ];
              return ran.every((lines) => lines.includes(job)) ? `job ${job}: PrologSlurmctld, EpilogSlurmctld, Prolog, Epilog ran` : undefined;
            },
            { timeoutMs: MINUTE },
          );
          started = true;
        });
      },
      15 * MINUTE,
    );

    for (const signal of ["sigterm", "sigkill"] as const) {
      it(
        `${signal === "sigterm" ? "SIGTERM (Kubernetes' stop)" : "SIGKILL"} of the primary with a job running and one pending: the backup takes control within SlurmctldTimeout + ${TAKEOVER_BOUND} s, both jobs and one submitted after run, slurmdbd records them; the primary comes back and takes control again`,
        async () => {
          expect(started).toBe(true);
          await withDiagnosis(diagnose, async () => {
            const submittedAt = Date.now();
            const running = await submit(["-N1", "--exclusive", "-t", "2", "--job-name", `${signal}-running`, "--wrap", "sleep 25"]);
            const pending = await submit(["-N1", "--exclusive", "-t", "2", "--job-name", `${signal}-pending`, "--wrap", "sleep 1"]);
            await waitFor("one job running, one pending", async () => ((await squeueState(running)) === "RUNNING" && (await squeueState(pending)) === "PENDING" ? true : undefined), {
              timeoutMs: MINUTE,
            });
            // Slurm writes its job state to the StateSaveLocation a moment after a change: a
            // primary killed before that loses the jobs it has just accepted ("Vestigial state
            // files ... no job record" on the backup). Kubernetes' SIGKILL comes after the
            // grace period; here the kill waits for the state file to hold both jobs.
            await waitFor(
              "the primary to save the jobs' state",
              async () => (existsSync(join(state, "job_state")) && statSync(join(state, "job_state")).mtimeMs > submittedAt + 1_000 ? true : undefined),
              { timeoutMs: 30_000, intervalMs: 500 },
            );
            const before = ctlLog(1).length;
            const t0 = Date.now();
            if (signal === "sigterm") await dockerOk(["stop", "-t", "30", n.ctl[0]], { timeoutMs: MINUTE });
            else await dockerOk(["kill", "--signal", "KILL", n.ctl[0]], { timeoutMs: MINUTE });
            const takeover = await waitFor(
              "the backup to take control",
              async () => (/not responding, BackupController1 \S+ taking over/.test(ctlLog(1).slice(before)) ? (Date.now() - t0) / 1000 : undefined),
              { timeoutMs: (HA_TIMEOUT + TAKEOVER_BOUND) * 1000, intervalMs: 500 },
            );
            // The operator's ping finds the backup in control; the Service follows it.
            expect(await followActive()).toBe(1);
            const after = await waitFor(
              "a job submitted from the login pod to run through the Service",
              async () => {
                const r = await inLogin(["srun", "-N1", "-t", "1", "--immediate=20", "--job-name", `${signal}-after`, "hostname"], MINUTE);
                return r.code === 0 ? (Date.now() - t0) / 1000 : undefined;
              },
              { timeoutMs: 2 * MINUTE, intervalMs: 2_000 },
            );
            report.failover[signal] = { takeover: Math.round(takeover * 10) / 10, served: Math.round(after * 10) / 10 };
            // The running job completes, the pending one starts and completes, and slurmdbd has all three.
            report.sacct = await waitFor(
              "sacct to record the jobs COMPLETED",
              async () => {
                const r = await inLogin(["sacct", "-n", "-X", "-P", "-a", "-o", "JobName,State"], 30_000);
                const done = ["running", "pending", "after"].every((job) => r.stdout.includes(`${signal}-${job}|COMPLETED`));
                return done ? r.stdout.trim() : undefined;
              },
              { timeoutMs: 2 * MINUTE, intervalMs: 2_000 },
            );
            // The old primary comes back on the same state volume and takes control again.
            const t1 = Date.now();
            await startController(0);
            const back = await waitFor(
              "the primary to be in control again and serve a job",
              async () => {
                const pinged = await ping();
                if (!(pinged[0]?.up && pinged[1]?.up)) return undefined;
                if ((await followActive()) !== 0) return undefined;
                const r = await inLogin(["srun", "-N1", "-t", "1", "--immediate=20", "hostname"], MINUTE);
                return r.code === 0 ? (Date.now() - t1) / 1000 : undefined;
              },
              { timeoutMs: 3 * MINUTE, intervalMs: 2_000 },
            );
            report.failback[signal] = Math.round(back * 10) / 10;
            const jobs = (await inLogin(["sacct", "-n", "-X", "-P", "-a", "-o", "JobName,State"], 30_000)).stdout;
            expect(jobs).toContain(`${signal}-pending|COMPLETED`);
            expect(jobs).not.toMatch(/\|(NODE_FAIL|FAILED|CANCELLED)/);
            const node = await exec(n.ctl[0], ["sinfo", "--noheader", "-N", "-o", "%N %T"], 30_000);
            expect(node.stdout).toContain(`${OP.workerPod} idle`);
          });
          report.passed = report.failover.sigterm !== null && (signal === "sigterm" || report.failover.sigkill !== null);
        },
        10 * MINUTE,
      );
    }
  });
}

