/**
 * A mini Slurm cluster on loopback, from the built images and their real
 * entrypoints: slurmctld, slurmd (one node, NodeAddr 127.0.0.1) and a login
 * container, all with --network host on non-default ports, sharing a slurm.conf
 * and an auth/slurm key made at test time. No cgroups: the container has none
 * to give, so process tracking is linuxproc and task/none.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { docker, dockerOk, HERE } from "./harness.js";

/** Prefix of every container the harness starts; cleanup removes exactly these names. */
export const CONTAINER_PREFIX = "slinky-test-";
const SLURM_UID = 401;

export interface ClusterPorts {
  slurmctld: number;
  slurmd: number;
  srunLow: number;
  srunHigh: number;
  slurmdbd: number;
  /** The test database (MariaDB) of slurmdbd. */
  mariadb: number;
  /** sshd of the slurmd and login containers (22 is the host's). */
  slurmdSsh: number;
  loginSsh: number;
}

export const DEFAULT_PORTS: ClusterPorts = {
  slurmctld: Number(process.env.SLINKY_TEST_SLURMCTLD_PORT ?? 16817),
  slurmd: Number(process.env.SLINKY_TEST_SLURMD_PORT ?? 16818),
  slurmdbd: Number(process.env.SLINKY_TEST_SLURMDBD_PORT ?? 16819),
  mariadb: Number(process.env.SLINKY_TEST_MARIADB_PORT ?? 16806),
  srunLow: 16900,
  srunHigh: 16950,
  slurmdSsh: 16822,
  loginSsh: 16823,
};

export const CLUSTER_NAME = "slinkytest";
export const NODE_NAME = "slinkytest-n1";
export const PARTITION = "debug";

/**
 * slurm.conf of the mini cluster. slurmctld only runs on a host named in
 * SlurmctldHost: with --network host a container has the host's name.
 */
export function slurmConf(
  ports: ClusterPorts,
  controllerHost = hostname().split(".")[0]!,
  { cpus = 1, accounting = true, authInfo, gres }: { cpus?: number; accounting?: boolean; authInfo?: string; gres?: string } = {},
): string {
  return [
    `ClusterName=${CLUSTER_NAME}`,
    `SlurmctldHost=${controllerHost}(127.0.0.1)`,
    "SlurmctldParameters=enable_configless",
    `SlurmctldPort=${ports.slurmctld}`,
    `SlurmdPort=${ports.slurmd}`,
    `SrunPortRange=${ports.srunLow}-${ports.srunHigh}`,
    "SlurmUser=slurm",
    "SlurmdUser=root",
    "AuthType=auth/slurm",
    "CredType=cred/slurm",
    "StateSaveLocation=/var/spool/slurmctld",
    "SlurmdSpoolDir=/var/spool/slurmd",
    "SlurmctldPidFile=/run/slurmctld.pid",
    "SlurmdPidFile=/run/slurmd.pid",
    "ProctrackType=proctrack/linuxproc",
    "TaskPlugin=task/none",
    "JobAcctGatherType=jobacct_gather/none",
    ...(accounting
      ? ["AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=127.0.0.1", `AccountingStoragePort=${ports.slurmdbd}`]
      : ["AccountingStorageType=accounting_storage/none"]),
    "SwitchType=switch/none",
    "MpiDefault=none",
    "ReturnToService=2",
    "SchedulerType=sched/backfill",
    "SelectType=select/cons_tres",
    "SlurmctldDebug=info",
    "SlurmdDebug=info",
    "SlurmdParameters=config_overrides",
    "MailProg=/bin/true",
    "SlurmctldTimeout=30",
    "SlurmdTimeout=30",
    ...(gres ? [`GresTypes=${gres.split(":")[0]}`] : []),
    `NodeName=${NODE_NAME} NodeAddr=127.0.0.1 NodeHostname=${NODE_NAME} CPUs=${cpus} RealMemory=100${gres ? ` Gres=${gres}` : ""} State=UNKNOWN`,
    `PartitionName=${PARTITION} Nodes=${NODE_NAME} Default=YES MaxTime=10 State=UP`,
    ...(authInfo ? [`AuthInfo=${authInfo}`] : []),
    "",
  ].join("\n");
}

export const CGROUP_CONF = "CgroupPlugin=disabled\n";

export const DB_NAME = "slurm_acct_db";
export const DB_USER = "slurm";

/** slurmdbd.conf: MariaDB on loopback, the password made at test time. */
export function slurmdbdConf(ports: ClusterPorts, password: string, dbdHost = hostname().split(".")[0]!): string {
  return [
    "AuthType=auth/slurm",
    `DbdHost=${dbdHost}`,
    `DbdPort=${ports.slurmdbd}`,
    "SlurmUser=slurm",
    "PidFile=/tmp/slurmdbd.pid",
    "DebugLevel=info",
    "StorageType=accounting_storage/mysql",
    "StorageHost=127.0.0.1",
    `StoragePort=${ports.mariadb}`,
    `StorageUser=${DB_USER}`,
    `StoragePass=${password}`,
    `StorageLoc=${DB_NAME}`,
    "",
  ].join("\n");
}

/** Run by MariaDB at each start: the database and slurmdbd's account. */
export function dbInitSql(password: string): string {
  const quoted = password.replace(/[\\']/g, "");
  return [
    `CREATE DATABASE IF NOT EXISTS ${DB_NAME};`,
    `CREATE USER IF NOT EXISTS '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${quoted}';`,
    `GRANT ALL ON ${DB_NAME}.* TO '${DB_USER}'@'127.0.0.1';`,
    "",
  ].join("\n");
}

export interface ClusterFiles {
  dir: string;
  /** slurm.conf, cgroup.conf, slurm.key: slurmctld's /etc/slurm. */
  etc: string;
  /** The key alone: /etc/slurm of the configless daemons (slurmd, sackd), as under slurm-operator. */
  keyOnly: string;
  /** Owned by uid 401, mounted as slurmctld's StateSaveLocation. */
  state: string;
  /** slurmdbd.conf (600, uid 401) and the key: slurmdbd's /etc/slurm. */
  dbd: string;
  /** init.sql for the test database (holds the password: 600, owned by `dbUid`). */
  dbInit: string;
}

/** slurm.conf, cgroup.conf and a fresh auth/slurm key (random, mode 600, owned by 401). */
export function writeClusterFiles(parent: string, ports: ClusterPorts, dbUid: number): ClusterFiles {
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, "cluster-"));
  const etc = join(dir, "etc-slurm");
  const keyOnly = join(dir, "etc-slurm-configless");
  const state = join(dir, "state");
  const dbd = join(dir, "etc-slurmdbd");
  mkdirSync(etc);
  mkdirSync(keyOnly);
  mkdirSync(state);
  mkdirSync(dbd);
  const password = randomBytes(18).toString("base64url");
  const secret = (path: string, content: string | Buffer, uid: number) => {
    writeFileSync(path, content, { mode: 0o600 });
    chmodSync(path, 0o600);
    chownSync(path, uid, uid);
  };
  secret(join(dbd, "slurmdbd.conf"), slurmdbdConf(ports, password), SLURM_UID);
  const dbInit = join(dir, "db-init.sql");
  secret(dbInit, dbInitSql(password), dbUid);
  writeFileSync(join(etc, "slurm.conf"), slurmConf(ports), { mode: 0o644 });
  writeFileSync(join(etc, "cgroup.conf"), CGROUP_CONF, { mode: 0o644 });
  const key = randomBytes(1024);
  for (const path of [join(etc, "slurm.key"), join(keyOnly, "slurm.key"), join(dbd, "slurm.key")]) {
    secret(path, key, SLURM_UID);
  }
  chownSync(state, SLURM_UID, SLURM_UID);
  return { dir, etc, keyOnly, state, dbd, dbInit };
}

export function removeClusterFiles(files: ClusterFiles): void {
  rmSync(files.dir, { recursive: true, force: true });
}

export interface Daemon {
  name: string;
  image: string;
  /** Replaces the image's entrypoint (the test database, the logfile sidecars). */
  entrypoint?: string;
  env?: Record<string, string>;
  mounts: string[];
  args?: string[];
  /** Capabilities beyond docker's default set. */
  capAdd?: string[];
  /** docker run --security-opt values. */
  securityOpt?: string[];
  /** docker run --device values (HOST:CONTAINER), the devices a device plugin would give. */
  devices?: string[];
}

/** `docker run -d` of a harness container: `flags` (network, label, user, ...), then the daemon's own settings. */
export async function runDetached(flags: readonly string[], daemon: Daemon): Promise<void> {
  const args = ["run", "-d", "--name", daemon.name, ...flags];
  for (const cap of daemon.capAdd ?? []) args.push("--cap-add", cap);
  for (const opt of daemon.securityOpt ?? []) args.push("--security-opt", opt);
  for (const device of daemon.devices ?? []) args.push("--device", device);
  for (const [key, value] of Object.entries(daemon.env ?? {})) args.push("-e", `${key}=${value}`);
  for (const mount of daemon.mounts) args.push("-v", mount);
  if (daemon.entrypoint) args.push("--entrypoint", daemon.entrypoint);
  args.push(daemon.image, ...(daemon.args ?? []));
  await dockerOk(args, { timeoutMs: 60_000 });
}

/** Starts a container through the image's own entrypoint, host network. */
export async function startDaemon(daemon: Daemon): Promise<void> {
  await runDetached(["--network", "host", "--label", "slinky-test=cluster"], daemon);
}

/** `docker exec` in a running container. */
export function exec(container: string, command: readonly string[], timeoutMs = 60_000) {
  return docker(["exec", container, ...command], { timeoutMs });
}

export async function logsOf(container: string): Promise<string> {
  const result = await docker(["logs", "--tail", "80", container], { timeoutMs: 30_000 });
  return `${result.stdout}${result.stderr}`;
}

/** Every container's log (its last lines), one section each: what a failure is reported with. */
export async function logsOfAll(names: readonly string[]): Promise<string> {
  return (await Promise.all(names.map(async (n) => `--- ${n}\n${await logsOf(n)}`))).join("\n");
}

/** Runs `checks`; a failure is rethrown carrying what `diagnose` says (the containers' logs). */
export async function withDiagnosis(diagnose: () => Promise<string>, checks: () => Promise<void>): Promise<void> {
  try {
    await checks();
  } catch (error) {
    throw new Error(`${String(error)}\n${await diagnose()}`);
  }
}

/** Removes the given containers (by their harness names only), ignoring absent ones. */
export async function removeContainers(names: readonly string[]): Promise<void> {
  for (const name of names) {
    if (!name.startsWith(CONTAINER_PREFIX)) throw new Error(`refusing to remove ${name}: not a harness container`);
    await docker(["rm", "-f", "-v", name], { timeoutMs: 60_000 });
  }
}

/** Thrown from a waitFor check to stop waiting at once. */
export class GiveUp extends Error {}

/** Throws GiveUp naming the containers that are no longer running (a daemon died). */
export async function requireRunning(names: readonly string[]): Promise<void> {
  const result = await docker(["inspect", "--format", "{{.Name}} {{.State.Running}} {{.State.ExitCode}}", ...names], {
    timeoutMs: 30_000,
  });
  const stopped = result.stdout
    .trim()
    .split("\n")
    .filter((line) => !/ true /.test(line));
  if (result.code !== 0 || stopped.length > 0) {
    throw new GiveUp(`containers not running: ${stopped.join(", ") || result.stderr.trim()}`);
  }
}

/** Polls `check` until it returns a value, bounded by count and time. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  { timeoutMs, intervalMs = 2_000 }: { timeoutMs: number; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const maxTries = Math.ceil(timeoutMs / intervalMs) + 1;
  let last: unknown;
  for (let attempt = 0; attempt < maxTries && Date.now() < deadline; attempt++) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

export const DB_IMAGE = "slinky-test/mariadb:trixie";

/**
 * Builds the test database image (test/images/db/Dockerfile) on the flavor's base
 * image; returns it and the uid of its mysql user (owner of the init file).
 */
export async function buildTestDatabase(baseImage: string): Promise<{ ref: string; mysqlUid: number }> {
  const context = join(HERE, "db");
  await dockerOk(
    ["build", "--network", "host", "--build-arg", `BASE_IMAGE=${baseImage}`, "-t", DB_IMAGE, context],
    { timeoutMs: 15 * 60_000 },
  );
  const uid = (await dockerOk(["run", "--rm", "--network", "none", "--entrypoint", "id", DB_IMAGE, "-u", "mysql"])).trim();
  if (!/^\d+$/.test(uid)) throw new Error(`mysql uid in ${DB_IMAGE}: ${uid}`);
  return { ref: DB_IMAGE, mysqlUid: Number(uid) };
}

export const MPI_IMAGE = "slinky-test/mpi-hello:trixie";
/** Where the mini cluster's slurmd and login containers see the MPI hello. */
export const MPI_DIR = "/opt/slinky-test-mpi";

/**
 * Compiles test/images/mpi/mpi-hello.c with Open MPI's mpicc in a test-only image
 * on the flavor's base image, and copies the binary into `outDir` (mounted at
 * MPI_DIR in the cluster). Returns the binary's host path.
 */
export async function buildMpiHello(baseImage: string, outDir: string): Promise<string> {
  await dockerOk(
    ["build", "--network", "host", "--build-arg", `BASE_IMAGE=${baseImage}`, "-t", MPI_IMAGE, join(HERE, "mpi")],
    { timeoutMs: 15 * 60_000 },
  );
  mkdirSync(outDir, { recursive: true });
  await dockerOk(["run", "--rm", "--network", "none", "-v", `${outDir}:/host`, "--entrypoint", "cp", MPI_IMAGE, "/out/mpi-hello", "/host/mpi-hello"]);
  return join(outDir, "mpi-hello");
}

/** Lines of a container's whole log that report a PMIx failure. */
export async function pmixErrors(container: string): Promise<string[]> {
  const result = await docker(["logs", container], { timeoutMs: 30_000 });
  return `${result.stdout}\n${result.stderr}`
    .split("\n")
    .filter((line) => /pmix/i.test(line) && /(error|can ?not|fail|unable)/i.test(line));
}
