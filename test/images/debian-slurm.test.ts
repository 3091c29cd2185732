/**
 * A second, real, newer Slurm in the default test command: Debian's own build
 * of Slurm (Debian unstable's slurm-wlm binary packages, 26.05.5 when written),
 * NOT the images' own compile, under the images' own entrypoints, supervisor
 * configuration and contract (test/images/debian-slurm/Dockerfile assembles
 * them on a debootstrapped sid base). CI can compile only Slurm 24.11.5; these
 * checks run what changed since: Slurm >= 25.05 makes `slurmctld --systemd`
 * fatal unless it runs as SlurmUser, 25.11 answers the operator's HTTP probes,
 * 26.05 sets a node with an empty `Topology=` INVALID.
 *
 * After the two clusters of its own (the operator main branch's `--conf` with
 * an empty `$SLINKY_TOPOLOGY`, started as root and as the operator starts
 * slurmctld), the mini cluster and the operator-shaped cluster run on these
 * images with the same checks as on the recipe's (mini-cluster.ts,
 * operator-cluster.ts): slurmdbd with MariaDB, slurmrestd with JWT, the 25.11
 * probes and REST API, the projected slurmdbd.conf, restarts and preStop.
 *
 * What differs from the product images, and so is not checked here: Debian's
 * packaging (plugins in /usr/lib/<triplet>/slurm-wlm, no mpi/pmix plugin: the
 * MPI job is skipped by a name that says so), sid's libc. The test's own
 * containers (MariaDB, logfile sidecars) run on the harness's trixie base. The
 * daemons' own behaviour is Slurm's.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTAINER_PREFIX, exec, GiveUp, logsOf, logsOfAll, removeContainers, requireRunning, waitFor, withDiagnosis } from "./cluster.js";
import { BASE_IMAGE, dockerEnv, dockerOk, ENGINE_DIR, ensureBase, HERE, REPO, run, startEngine, stopEngine, type Engine } from "./harness.js";
import { type ComposeReport, composeTests } from "./compose.js";
import { type MiniClusterReport, miniClusterTests } from "./mini-cluster.js";
import { OP, SLURM_UID, startPodContainer } from "./operator.js";
import { operatorClusterTests, type OperatorReport } from "./operator-cluster.js";
import { httpProbe } from "./probes.js";

const MINUTE = 60_000;
const BASE = process.env.SLINKY_SID_BASE_IMAGE ?? "slinky-base/debian:sid";
const IMAGE = (target: string) => `slinky-test/debian-slurm/${target}:sid`;
const PORTS = { slurmctld: 17817, slurmd: 17818, srunLow: 17900, srunHigh: 17950, slurmdSsh: 17822, loginSsh: 17823 };
const NAMES = {
  ctld: `${CONTAINER_PREFIX}sid-slurmctld`,
  slurmd: `${CONTAINER_PREFIX}sid-slurmd`,
  login: `${CONTAINER_PREFIX}sid-login`,
};
const NODE = OP.workerPod;
const PARTITION = "slinky";
/** The line sid served when written: the checks of the operator's 25.11 features run (the first test holds it at >= 25.11). */
const LINE = "26.05";
const TARGETS = ["slurmctld", "slurmd", "login", "slurmdbd", "slurmrestd", "sackd"];

/** slurm.conf in the operator's shape (configless, a NodeSet of dynamic nodes), on the test's ports. */
function slurmConf(): string {
  return [
    "ClusterName=slinkysid",
    "SlurmUser=slurm",
    `SlurmctldHost=${OP.controllerPod}(${OP.controllerService})`,
    `SlurmctldPort=${PORTS.slurmctld}`,
    `SlurmdPort=${PORTS.slurmd}`,
    `SrunPortRange=${PORTS.srunLow}-${PORTS.srunHigh}`,
    "StateSaveLocation=/var/spool/slurmctld/slinkysid",
    "SlurmdUser=root",
    "SlurmdSpoolDir=/var/spool/slurmd",
    "ReturnToService=2",
    "MaxNodeCount=16",
    "AuthType=auth/slurm",
    "CredType=cred/slurm",
    "SlurmctldParameters=enable_configless",
    "ProctrackType=proctrack/linuxproc",
    "TaskPlugin=task/affinity",
    "JobAcctGatherType=jobacct_gather/none",
    "SlurmctldTimeout=30",
    "SlurmdTimeout=30",
    `NodeSet=${PARTITION} Feature=${PARTITION}`,
    `PartitionName=${PARTITION} Nodes=${PARTITION} Default=YES MaxTime=10 State=UP`,
    "",
  ].join("\n");
}

let engine: Engine | undefined;
let dir = "";
let version = "";
const report = {
  slurm: "",
  root: {} as Record<string, string>,
  operator: {} as Record<string, string>,
  miniCluster: { sinfo: "", slurmctldUsers: "", srun: "", sacct: "", mpiList: "", mpi: "", passed: false } as MiniClusterReport,
  operatorCluster: { passed: false, checks: {}, needsSlurm2511: [] } as OperatorReport,
  compose: { upSeconds: 0, health: {}, sinfo: "", srun: "", sacct: "", mpi: "", restPing: "", leftAfterDown: [], passed: false } as ComposeReport,
};

/** Files of one cluster: /etc/slurm for slurmctld and login (slurm.conf, cgroup.conf, key), the key alone for slurmd. */
function clusterFiles(mode: "root" | "operator") {
  const base = mkdtempSync(join(dir, `${mode}-`));
  const etc = join(base, "etc");
  const keyOnly = join(base, "key");
  mkdirSync(etc);
  mkdirSync(keyOnly);
  const key = randomBytes(1024);
  writeFileSync(join(etc, "slurm.conf"), slurmConf());
  writeFileSync(join(etc, "cgroup.conf"), "CgroupPlugin=disabled\n");
  for (const file of [join(etc, "slurm.key"), join(keyOnly, "slurm.key")]) writeFileSync(file, key, { mode: 0o600 });
  if (mode === "operator") {
    // As the kubelet projects the controller's volume under fsGroup 401: root:401, 0640 (0650 the key).
    for (const name of ["slurm.conf", "cgroup.conf", "slurm.key"]) {
      chownSync(join(etc, name), 0, SLURM_UID);
      chmodSync(join(etc, name), name === "slurm.key" ? 0o650 : 0o640);
    }
  } else {
    chownSync(join(etc, "slurm.key"), SLURM_UID, SLURM_UID);
  }
  // emptyDirs for the operator's pod (mode 2777 root:401), a state directory for root's.
  const empty = (name: string) => {
    const path = join(base, name);
    mkdirSync(path);
    chownSync(path, 0, SLURM_UID);
    chmodSync(path, 0o2777);
    return path;
  };
  return { etc, keyOnly, run: empty("run"), runSlurmctld: empty("run-slurmctld"), state: empty("state"), log: empty("log") };
}

/** Starts slurmctld, slurmd and login; waits for the node to be idle; returns sinfo's line. */
async function startCluster(mode: "root" | "operator", topologyEnv: string): Promise<string> {
  await removeContainers(Object.values(NAMES));
  const f = clusterFiles(mode);
  const confServer = `${OP.controllerService}:${PORTS.slurmctld}`;
  await startPodContainer({
    name: NAMES.ctld,
    image: IMAGE("slurmctld"),
    hostname: OP.controllerPod,
    ...(mode === "operator" ? { user: `${SLURM_UID}:${SLURM_UID}`, fsGroup: SLURM_UID } : {}),
    mounts:
      mode === "operator"
        ? [`${f.etc}:/etc/slurm:ro`, `${f.run}:/run`, `${f.runSlurmctld}:/run/slurmctld`, `${f.state}:/var/spool/slurmctld`, `${f.log}:/var/log/slurm`]
        : [`${f.etc}:/etc/slurm:ro`],
  });
  // The operator's worker: root, with its --conf carrying the main branch's Topology item.
  await startPodContainer({
    name: NAMES.slurmd,
    image: IMAGE("slurmd"),
    hostname: NODE,
    capAdd: ["NET_ADMIN", "SYS_ADMIN", "SYS_NICE"],
    env: { SSHD_OPTIONS: `-p ${PORTS.slurmdSsh}`, SLINKY_TOPOLOGY: topologyEnv },
    mounts: [`${f.keyOnly}:/etc/slurm:ro`],
    args: ["-Z", "--conf-server", confServer, "--conf", `'Features=${PARTITION} Topology='"$SLINKY_TOPOLOGY"''`],
  });
  await startPodContainer({
    name: NAMES.login,
    image: IMAGE("login"),
    hostname: OP.loginPod,
    env: { SSHD_OPTIONS: `-p ${PORTS.loginSsh}` },
    mounts: [`${f.etc}:/etc/slurm:ro`],
  });
  return waitFor(
    `sinfo to show ${NODE} idle`,
    async () => {
      await requireRunning(Object.values(NAMES));
      const r = await exec(NAMES.login, ["sinfo", "--noheader", "-N", "-o", "%N %T %P"], 30_000);
      if (/inval/.test(r.stdout)) throw new GiveUp(`the node is INVALID: ${r.stdout.trim()}`);
      return r.code === 0 && r.stdout.includes(`${NODE} idle ${PARTITION}`) ? r.stdout.trim() : undefined;
    },
    { timeoutMs: 3 * MINUTE },
  );
}

/** The checks both ways of starting share: slurmctld's user, the probes, a job. */
async function clusterChecks(into: Record<string, string>): Promise<void> {
  const owners = await exec(NAMES.ctld, ["ps", "-o", "ruser=,euser=", "-C", "slurmctld"], 30_000);
  into.slurmctldUsers = owners.stdout.trim();
  const rows = owners.stdout.trim().split("\n").map((row) => row.trim().split(/\s+/).join(" "));
  expect(rows.length).toBeGreaterThan(0);
  expect(new Set(rows)).toEqual(new Set(["slurm slurm"]));
  for (const port of [PORTS.slurmctld, PORTS.slurmd]) {
    for (const path of ["/livez", "/readyz"]) {
      const probe = await httpProbe(`http://127.0.0.1:${port}${path}`);
      into[`:${port}${path}`] = String(probe.status ?? probe.error);
      expect(probe.passed, `GET :${port}${path} ${JSON.stringify(probe)}`).toBe(true);
    }
  }
  const srun = await exec(NAMES.login, ["srun", "-N1", "-t", "1", "--immediate=60", "printenv", "SLURMD_NODENAME"], 2 * MINUTE);
  into.srun = `${srun.stdout}${srun.stderr}`.trim();
  expect(srun.code, into.srun).toBe(0);
  expect(srun.stdout.trim()).toBe(NODE);
  const node = await exec(NAMES.login, ["scontrol", "show", "node", NODE], 30_000);
  expect(node.stdout).toMatch(/AvailableFeatures=slinky/);
  expect(node.stdout).not.toMatch(/Topology=/);
}

/** Runs `checks`; a failure carries the three containers' logs. */
const withLogs = (checks: () => Promise<void>) => withDiagnosis(() => logsOfAll(Object.values(NAMES)), checks);

describe.sequential(`Debian's build of Slurm (sid's slurm-wlm) under the images' entrypoints`, () => {
  beforeAll(async () => {
    engine = await startEngine();
    await ensureBase(BASE_IMAGE);
    dir = mkdtempSync(join(ENGINE_DIR, "..", "slinky-sid-"));
    const base = await run(join(HERE, "base.sh"), [BASE], { timeoutMs: 20 * MINUTE, env: { ...dockerEnv, SLINKY_BASE_SUITE: "sid" } });
    if (base.code !== 0) throw new Error(`sid base image failed:\n${base.stderr}`);
    for (const target of TARGETS) {
      await dockerOk(
        ["build", "--network", "host", "--build-arg", `BASE_IMAGE=${BASE}`, "--target", target, "-t", IMAGE(target), "-f", join(HERE, "debian-slurm", "Dockerfile"), join(REPO, "dockerfiles", "debian")],
        { timeoutMs: 20 * MINUTE },
      );
    }
    version = (await dockerOk(["run", "--rm", "--network", "none", "--entrypoint", "slurmctld", IMAGE("slurmctld"), "-V"])).trim();
    report.slurm = version;
  }, 45 * MINUTE);

  afterAll(async () => {
    await removeContainers(Object.values(NAMES));
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (engine) await stopEngine(engine);
    console.log(`[debian-slurm] ${JSON.stringify(report)}`);
  }, 5 * MINUTE);

  it("is Debian's slurm-wlm of line 25.11 or newer (`slurmctld --systemd` needs SlurmUser from 25.05; the operator's probes and REST API need 25.11)", () => {
    const match = /^slurm-wlm (\d+)\.(\d+)\.\d+$/.exec(version);
    expect(match, version).not.toBeNull();
    expect(Number(match![1]) * 100 + Number(match![2])).toBeGreaterThanOrEqual(2511);
  });

  describe.sequential("its own cluster: the operator main branch's --conf with an empty $SLINKY_TOPOLOGY", () => {
    // Its daemons leave before the clusters below start.
    afterAll(() => removeContainers(Object.values(NAMES)), 5 * MINUTE);

    it(
      "as root (docker run, compose): slurmctld runs as SlurmUser, probes pass as the kubelet judges, a dynamic node with an empty Topology registers and runs a job",
      async () => {
        await withLogs(async () => {
          report.root.sinfo = await startCluster("root", "");
          await clusterChecks(report.root);
          expect(await logsOf(NAMES.ctld)).toMatch(/exec setpriv --reuid=slurm/);
        });
      },
      10 * MINUTE,
    );

    it(
      "as slurm-operator runs slurmctld (uid 401, fsGroup 401, read-only /etc/slurm 0640 root:401, empty /run, /run/slurmctld, state and log directories): the same",
      async () => {
        await withLogs(async () => {
          report.operator.sinfo = await startCluster("operator", "");
          await clusterChecks(report.operator);
          expect(await logsOf(NAMES.ctld)).not.toMatch(/setpriv/);
        });
      },
      10 * MINUTE,
    );
  });

  /** Debian's build of Slurm under the images' entrypoints. */
  const subject = {
    label: "Debian's build of Slurm",
    line: LINE,
    version: () => version.replace(/^slurm-wlm /, ""),
    ref: IMAGE,
    baseImage: () => BASE_IMAGE,
  };
  const noMpi = "Debian's build of Slurm ships no mpi/pmix plugin (mpi_pmix.so)";
  miniClusterTests(subject, report.miniCluster, noMpi);
  operatorClusterTests(subject, report.operatorCluster);
  composeTests(subject, report.compose, noMpi);
});
