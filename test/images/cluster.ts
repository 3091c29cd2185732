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
import { docker, dockerOk } from "./harness.js";

/** Prefix of every container the harness starts; cleanup removes exactly these names. */
export const CONTAINER_PREFIX = "slinky-test-";
const SLURM_UID = 401;

export interface ClusterPorts {
  slurmctld: number;
  slurmd: number;
  srunLow: number;
  srunHigh: number;
  /** sshd of the slurmd and login containers (22 is the host's). */
  slurmdSsh: number;
  loginSsh: number;
}

export const DEFAULT_PORTS: ClusterPorts = {
  slurmctld: Number(process.env.SLINKY_TEST_SLURMCTLD_PORT ?? 16817),
  slurmd: Number(process.env.SLINKY_TEST_SLURMD_PORT ?? 16818),
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
export function slurmConf(ports: ClusterPorts, controllerHost = hostname().split(".")[0]!): string {
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
    "AccountingStorageType=accounting_storage/none",
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
    `NodeName=${NODE_NAME} NodeAddr=127.0.0.1 NodeHostname=${NODE_NAME} CPUs=1 RealMemory=100 State=UNKNOWN`,
    `PartitionName=${PARTITION} Nodes=${NODE_NAME} Default=YES MaxTime=10 State=UP`,
    "",
  ].join("\n");
}

export const CGROUP_CONF = "CgroupPlugin=disabled\n";

export interface ClusterFiles {
  dir: string;
  /** slurm.conf, cgroup.conf, slurm.key: slurmctld's /etc/slurm. */
  etc: string;
  /** The key alone: /etc/slurm of the configless daemons (slurmd, sackd), as under slurm-operator. */
  keyOnly: string;
  /** Owned by uid 401, mounted as slurmctld's StateSaveLocation. */
  state: string;
}

/** slurm.conf, cgroup.conf and a fresh auth/slurm key (random, mode 600, owned by 401). */
export function writeClusterFiles(parent: string, ports: ClusterPorts): ClusterFiles {
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, "cluster-"));
  const etc = join(dir, "etc-slurm");
  const keyOnly = join(dir, "etc-slurm-configless");
  const state = join(dir, "state");
  mkdirSync(etc);
  mkdirSync(keyOnly);
  mkdirSync(state);
  writeFileSync(join(etc, "slurm.conf"), slurmConf(ports), { mode: 0o644 });
  writeFileSync(join(etc, "cgroup.conf"), CGROUP_CONF, { mode: 0o644 });
  const key = randomBytes(1024);
  for (const path of [join(etc, "slurm.key"), join(keyOnly, "slurm.key")]) {
    writeFileSync(path, key, { mode: 0o600 });
    chmodSync(path, 0o600);
    chownSync(path, SLURM_UID, SLURM_UID);
  }
  chownSync(state, SLURM_UID, SLURM_UID);
  return { dir, etc, keyOnly, state };
}

export function removeClusterFiles(files: ClusterFiles): void {
  rmSync(files.dir, { recursive: true, force: true });
}

export interface Daemon {
  name: string;
  image: string;
  env?: Record<string, string>;
  mounts: string[];
  args?: string[];
}

/** Starts a container through the image's own entrypoint, host network. */
export async function startDaemon(daemon: Daemon): Promise<void> {
  const args = ["run", "-d", "--name", daemon.name, "--network", "host", "--label", "slinky-test=cluster"];
  for (const [key, value] of Object.entries(daemon.env ?? {})) args.push("-e", `${key}=${value}`);
  for (const mount of daemon.mounts) args.push("-v", mount);
  args.push(daemon.image, ...(daemon.args ?? []));
  await dockerOk(args, { timeoutMs: 60_000 });
}

/** `docker exec` in a running container. */
export function exec(container: string, command: readonly string[], timeoutMs = 60_000) {
  return docker(["exec", container, ...command], { timeoutMs });
}

export async function logsOf(container: string): Promise<string> {
  const result = await docker(["logs", "--tail", "80", container], { timeoutMs: 30_000 });
  return `${result.stdout}${result.stderr}`;
}

/** Removes the given containers (by their harness names only), ignoring absent ones. */
export async function removeContainers(names: readonly string[]): Promise<void> {
  for (const name of names) {
    if (!name.startsWith(CONTAINER_PREFIX)) throw new Error(`refusing to remove ${name}: not a harness container`);
    await docker(["rm", "-f", "-v", name], { timeoutMs: 60_000 });
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
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}
