/**
 * An operator-shaped cluster: the images started the way slurm-operator v1.1.2's
 * builders (internal/builder/**) start them in Kubernetes, and v1.2.1's where
 * they changed (the slurm.conf it renders, no default gres.conf; the restart and
 * preStop checks in operator-cluster.ts), with docker on this machine. What each pod
 * gets, and what stands in for Kubernetes here:
 *
 * - users: slurmctld and slurmdbd pods run as uid/gid 401 with fsGroup 401
 *   (`--user 401:401 --group-add 401`), slurmrestd as 65534 with fsGroup 65534,
 *   slurmd as root with NET_ADMIN SYS_ADMIN SYS_NICE (the operator: privileged, plus
 *   BPF; this machine's docker refuses --privileged, its capability bounding set
 *   lacking CAP_SYS_RESOURCE, and docker 20.10 knows no BPF), login as root.
 * - /etc/slurm: a read-only mount whose files carry the modes the kubelet gives a
 *   projected volume under fsGroup (defaultMode 0610 -> 0650 root:401 for the
 *   controller, 0600 -> 0640 root:<fsGroup> for accounting and restapi, 0600
 *   root:root where the pod has no fsGroup: worker); login's /etc/slurm is the
 *   emptyDir its initconf container fills (slurm.key 0600 401:401).
 * - emptyDirs (/run, /run/slurmctld, /var/log/slurm, the state save location,
 *   login's /run/slurm): empty host directories made by the test with an emptyDir's
 *   mode (2777 root:<fsGroup>, or 0777 root:root without fsGroup), bind-mounted,
 *   hiding the image's own content there. (docker 20.10's --tmpfs copies the image
 *   directory's mode onto the tmpfs, so it cannot give an emptyDir's 0777.)
 * - log files: FIFOs made by a logfile sidecar (a container of the base image
 *   running the test's own loop, as the operator's alpine sidecar does) that
 *   prints what the daemon writes.
 * - Service DNS: every pod and service name maps to 127.0.0.1 (`--add-host`), each
 *   container has its pod's hostname; all share the host's network, so ports are
 *   the harness's (16806-16823), not 6817-6820, and sshd listens on a harness port.
 * - Where the operator's pod spec needs a Slurm newer than the harness builds, the
 *   checks say so by name (SLURM_2511_FEATURES).
 */
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CONTAINER_PREFIX, type ClusterPorts, type Daemon, DB_NAME, DB_USER, dbInitSql, runDetached } from "./cluster.js";
import { docker, dockerOk, run } from "./harness.js";

export const SLURM_UID = 401;
export const NOBODY_UID = 65534;

/** Names as the operator makes them for a cluster `slinkyop` with a NodeSet/LoginSet `slinky`. */
export const OP = {
  cluster: "slinkyop",
  nodeset: "slinky",
  controllerPod: "slurm-controller-0",
  controllerService: "slurm-controller",
  accountingPod: "slurm-accounting-0",
  accountingService: "slurm-accounting",
  workerPod: "slinky-0",
  loginPod: "slurm-login-slinky-0",
  restapiPod: "slurm-restapi-0",
} as const;

/** Container names (all carry the harness prefix, so cleanup finds them). */
export const OP_NAMES = {
  db: `${CONTAINER_PREFIX}op-mariadb`,
  dbd: `${CONTAINER_PREFIX}op-slurmdbd`,
  ctld: `${CONTAINER_PREFIX}op-slurmctld`,
  ctldLog: `${CONTAINER_PREFIX}op-slurmctld-logfile`,
  reconfigure: `${CONTAINER_PREFIX}op-reconfigure`,
  restapi: `${CONTAINER_PREFIX}op-slurmrestd`,
  slurmd: `${CONTAINER_PREFIX}op-slurmd`,
  slurmdLog: `${CONTAINER_PREFIX}op-slurmd-logfile`,
  login: `${CONTAINER_PREFIX}op-login`,
} as const;

export interface OperatorPorts extends ClusterPorts {
  slurmrestd: number;
}

/** Features the operator's pod specs rely on that Slurm has only from 25.11. */
export const SLURM_2511_FEATURES = {
  httpProbes: "HTTP GET /livez and /readyz on SlurmctldPort and SlurmdPort (startup, liveness, readiness probes)",
  slurmdbdConf0640: "slurmdbd accepts a slurmdbd.conf that is 0640 root:401 (the kubelet's projection of a 0600 secret under fsGroup 401)",
  restV0044: "REST API v0.0.44 (the operator's Slurm client)",
} as const;

/** True when `version` (X.Y or X.Y.Z) is at least `line` (X.Y). */
export function atLeast(version: string, line: string): boolean {
  const [a = 0, b = 0] = version.split(".").map(Number);
  const [c = 0, d = 0] = line.split(".").map(Number);
  return a > c || (a === c && b >= d);
}

/** The REST API version the harness's Slurm serves for the ping (24.11: v0.0.42). */
export function restApiVersion(slurmVersion: string): string {
  return atLeast(slurmVersion, "25.11") ? "v0.0.44" : "v0.0.42";
}

/**
 * slurm.conf as slurm-operator v1.2.1's controller builder writes it
 * (controllerbuilder/controller_config.go): no ReturnToService, GresTypes,
 * LogTimeFormat, block_null_hash, SelectTypeParameters, AccountingStorageTRES,
 * and no proctrack/task/jobacct plugins of its own (Slurm's defaults, cgroup).
 * SlurmctldParameters gains reconfig_on_restart (a 25.11 option: left out for
 * the 24.11 stand-in, which the operator does not support). This machine's host
 * has cgroup v1 and its containers no cgroup to give (cgroup.conf: disabled), so
 * the test sets proctrack/linuxproc and task/affinity where a user would, in the
 * controller's extraConf, with the test's ports and timeouts.
 */
export function operatorSlurmConf(ports: OperatorPorts, slurmVersion: string): string {
  return [
    "#",
    "### GENERAL ###",
    `ClusterName=${OP.cluster}`,
    "SlurmUser=slurm",
    `SlurmctldHost=${OP.controllerPod}(${OP.controllerService})`,
    `SlurmctldPort=${ports.slurmctld}`,
    `StateSaveLocation=/var/spool/slurmctld/${OP.cluster}`,
    "SlurmdUser=root",
    `SlurmdPort=${ports.slurmd}`,
    "SlurmdSpoolDir=/var/spool/slurmd",
    "MaxNodeCount=1024",
    "#",
    "### LOGGING ###",
    "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
    "SlurmSchedLogFile=/var/log/slurm/slurmctld.log",
    "SlurmdLogFile=/var/log/slurm/slurmd.log",
    "#",
    "### PLUGINS & PARAMETERS ###",
    "AuthType=auth/slurm",
    "CredType=cred/slurm",
    "AuthAltTypes=auth/jwt",
    "AuthAltParameters=jwt_key=/etc/slurm/jwt.key",
    "AuthInfo=use_client_ids",
    `SlurmctldParameters=enable_configless${atLeast(slurmVersion, "25.11") ? ",reconfig_on_restart" : ""}`,
    "#",
    "### ACCOUNTING ###",
    "AccountingStorageType=accounting_storage/slurmdbd",
    `AccountingStorageHost=${OP.accountingService}`,
    `AccountingStoragePort=${ports.slurmdbd}`,
    "#",
    "### NODESET & PARTITION ###",
    `NodeSet=${OP.nodeset} Feature=${OP.nodeset}`,
    `PartitionName=${OP.nodeset} Nodes=${OP.nodeset} Default=YES MaxTime=UNLIMITED State=UP`,
    "#",
    "### EXTRA CONFIG ###",
    // This host: no cgroup for the containers, so no cgroup plugins; host network: srun's ports.
    "ProctrackType=proctrack/linuxproc",
    "TaskPlugin=task/affinity",
    `SrunPortRange=${ports.srunLow}-${ports.srunHigh}`,
    "SlurmctldTimeout=30",
    "SlurmdTimeout=30",
    "",
  ].join("\n");
}

/**
 * sshd_config as the operator's login builder writes it (loginbuilder/login_config.go,
 * the same in v1.1.2 and v1.2.1), `extra` being the LoginSet's extraSshdConfig. On a
 * host network the user moves sshd there (v1.2.1 then names the container port
 * `login` after it; sshd itself learns it only from this file).
 */
export function operatorSshdConfig(extra: readonly string[]): string {
  return [
    "#",
    "### GENERAL ###",
    "Include /etc/ssh/sshd_config.d/*.conf",
    "UsePAM yes",
    "X11Forwarding yes",
    "Subsystem sftp internal-sftp",
    "#",
    "### EXTRA CONFIG ###",
    ...extra,
    "",
  ].join("\n");
}

/** slurmdbd.conf as the operator's accounting builder writes it. */
export function operatorSlurmdbdConf(ports: OperatorPorts, password: string): string {
  return [
    "#",
    "### GENERAL ###",
    `DbdHost=${OP.accountingPod}`,
    `DbdPort=${ports.slurmdbd}`,
    "SlurmUser=slurm",
    "#",
    "### PLUGINS & PARAMETERS ###",
    "AuthType=auth/slurm",
    "AuthAltTypes=auth/jwt",
    "AuthAltParameters=jwt_key=/etc/slurm/jwt.key",
    "AuthInfo=use_client_ids",
    "#",
    "### STORAGE ###",
    "StorageType=accounting_storage/mysql",
    "StorageHost=127.0.0.1",
    `StoragePort=${ports.mariadb}`,
    `StorageUser=${DB_USER}`,
    `StorageLoc=${DB_NAME}`,
    `StoragePass=${password}`,
    "#",
    "### LOGGING ###",
    "LogFile=/dev/null",
    "LogTimeFormat=iso8601,format_stderr",
    "",
  ].join("\n");
}

export interface OperatorFiles {
  dir: string;
  jwtKey: Buffer;
  controllerEtc: string;
  /** The accounting pod's /etc/slurm as the harness's Slurm accepts it (see slurmdbdConfNote). */
  accountingEtc: string;
  /** The accounting pod's /etc/slurm exactly as the kubelet projects it (slurmdbd.conf 0640 root:401). */
  accountingEtcProjected: string;
  restapiEtc: string;
  workerEtc: string;
  loginEtc: string;
  empty: Record<"ctldRun" | "ctldAuthSocket" | "ctldLog" | "ctldState" | "dbdRun" | "workerLog" | "loginSackd", string>;
  login: {
    hostKeys: Record<string, string>;
    sshdConfig: string;
    authorizedKeys: string;
    sssdConf: string;
    clientKey: string;
    ed25519Pub: string;
  };
  dbInit: string;
  /** How slurmdbd.conf is mounted in `accountingEtc`, and why. */
  slurmdbdConfNote: string;
}

/** A file with the owner and mode the kubelet gives it in a projected volume. */
export const writeOwned = (path: string, content: string | Buffer, mode: number, uid: number, gid: number) => {
  writeFileSync(path, content, { mode });
  chmodSync(path, mode);
  chownSync(path, uid, gid);
};

/** An emptyDir's directory: 2777 root:<fsGroup>, or 0777 root:root without fsGroup. */
export const emptyDir = (path: string, fsGroup: number | null) => {
  mkdirSync(path, { recursive: true });
  if (fsGroup === null) {
    chownSync(path, 0, 0);
    chmodSync(path, 0o777);
  } else {
    chownSync(path, 0, fsGroup);
    chmodSync(path, 0o2777);
  }
};

/** Writes every pod's files with the kubelet's owners and modes. */
export async function writeOperatorFiles(
  parent: string,
  ports: OperatorPorts,
  dbUid: number,
  slurmVersion: string,
): Promise<OperatorFiles> {
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, "operator-"));
  const d = (name: string) => {
    const path = join(dir, name);
    mkdirSync(path, { recursive: true });
    return path;
  };
  const slurmKey = randomBytes(1024);
  const jwtKey = randomBytes(64);
  const password = randomBytes(18).toString("base64url");
  const slurmConf = operatorSlurmConf(ports, slurmVersion);

  // Controller: projected volume, defaultMode 0610, fsGroup 401 -> 0650 root:401.
  const controllerEtc = d("controller-etc");
  writeOwned(join(controllerEtc, "slurm.conf"), slurmConf, 0o650, 0, SLURM_UID);
  writeOwned(join(controllerEtc, "cgroup.conf"), "CgroupPlugin=disabled\n", 0o650, 0, SLURM_UID);
  writeOwned(join(controllerEtc, "slurm.key"), slurmKey, 0o650, 0, SLURM_UID);
  writeOwned(join(controllerEtc, "jwt.key"), jwtKey, 0o650, 0, SLURM_UID);

  // Accounting: defaultMode 0600, fsGroup 401 -> 0640 root:401.
  const dbdConf = operatorSlurmdbdConf(ports, password);
  const accountingEtcProjected = d("accounting-etc-projected");
  writeOwned(join(accountingEtcProjected, "slurmdbd.conf"), dbdConf, 0o640, 0, SLURM_UID);
  writeOwned(join(accountingEtcProjected, "slurm.key"), slurmKey, 0o640, 0, SLURM_UID);
  writeOwned(join(accountingEtcProjected, "jwt.key"), jwtKey, 0o640, 0, SLURM_UID);
  let accountingEtc = accountingEtcProjected;
  let slurmdbdConfNote = "slurmdbd.conf 0640 root:401, as the kubelet projects it";
  if (!atLeast(slurmVersion, "25.11")) {
    // Before 25.11 slurmdbd refuses a group-readable slurmdbd.conf not owned by
    // SlurmUser. Least bad: only that file differs, 0600 401:401, as an init
    // container copying it into an emptyDir would make it (the operator's own
    // initconf pattern); the keys stay as projected.
    accountingEtc = d("accounting-etc");
    writeOwned(join(accountingEtc, "slurmdbd.conf"), dbdConf, 0o600, SLURM_UID, SLURM_UID);
    writeOwned(join(accountingEtc, "slurm.key"), slurmKey, 0o640, 0, SLURM_UID);
    writeOwned(join(accountingEtc, "jwt.key"), jwtKey, 0o640, 0, SLURM_UID);
    slurmdbdConfNote =
      `Slurm ${slurmVersion} refuses the projected 0640 root:401 slurmdbd.conf; ` +
      "this cluster mounts it 0600 401:401 (as an initconf-style init container copying it into an emptyDir would), " +
      "the keys as projected; with 25.11 the projected file is used as is";
  }

  // Restapi: defaultMode 0600, fsGroup 65534 -> 0640 root:65534.
  const restapiEtc = d("restapi-etc");
  writeOwned(join(restapiEtc, "slurm.conf"), slurmConf, 0o640, 0, NOBODY_UID);
  writeOwned(join(restapiEtc, "slurm.key"), slurmKey, 0o640, 0, NOBODY_UID);

  // Worker: defaultMode 0600, no fsGroup -> 0600 root:root; configless, the key only.
  const workerEtc = d("worker-etc");
  writeOwned(join(workerEtc, "slurm.key"), slurmKey, 0o600, 0, 0);

  // Login: its initconf container copies the key into an emptyDir, 0600 401:401.
  const loginEtc = d("login-etc");
  chmodSync(loginEtc, 0o777);
  writeOwned(join(loginEtc, "slurm.key"), slurmKey, 0o600, SLURM_UID, SLURM_UID);

  const empty = {
    ctldRun: join(dir, "empty", "controller-run"),
    ctldAuthSocket: join(dir, "empty", "controller-authsocket"),
    ctldLog: join(dir, "empty", "controller-logfile"),
    ctldState: join(dir, "empty", "controller-statesave"),
    dbdRun: join(dir, "empty", "accounting-run"),
    workerLog: join(dir, "empty", "worker-logfile"),
    loginSackd: join(dir, "empty", "login-sackd"),
  };
  for (const path of [empty.ctldRun, empty.ctldAuthSocket, empty.ctldLog, empty.ctldState, empty.dbdRun]) emptyDir(path, SLURM_UID);
  for (const path of [empty.workerLog, empty.loginSackd]) emptyDir(path, null);

  // Login's ssh material: host keys, sshd_config, authorized_keys, sssd.conf,
  // each projected 0600 (public keys 0644) root:root (no fsGroup), mounted one file each.
  const ssh = d("login-ssh");
  const hostKeys: Record<string, string> = {};
  for (const type of ["rsa", "ed25519", "ecdsa"]) {
    const key = join(ssh, `ssh_host_${type}_key`);
    const r = await run("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", `${OP.loginPod}`, "-f", key], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`ssh-keygen -t ${type}: ${r.stderr}`);
    chmodSync(key, 0o600);
    chmodSync(`${key}.pub`, 0o644);
    hostKeys[`ssh_host_${type}_key`] = key;
    hostKeys[`ssh_host_${type}_key.pub`] = `${key}.pub`;
  }
  const clientKey = join(ssh, "client_ed25519");
  const c = await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "slinky-test", "-f", clientKey], { timeoutMs: 60_000 });
  if (c.code !== 0) throw new Error(`ssh-keygen client key: ${c.stderr}`);
  const authorizedKeys = join(ssh, "authorized_keys");
  writeOwned(authorizedKeys, `#\n### SLINKY ###\n${readFileSync(`${clientKey}.pub`, "utf8")}`, 0o600, 0, 0);
  const sshdConfig = join(ssh, "sshd_config");
  writeOwned(sshdConfig, operatorSshdConfig([`Port ${ports.loginSsh}`, "ListenAddress 127.0.0.1"]), 0o600, 0, 0);
  const sssdConf = join(ssh, "sssd.conf");
  writeOwned(
    sssdConf,
    [
      "[sssd]",
      "services = nss, pam",
      "domains = TEST",
      "",
      "[domain/TEST]",
      "id_provider = ldap",
      "auth_provider = ldap",
      "ldap_uri = ldap://ldap.invalid",
      "ldap_search_base = dc=invalid",
      "",
    ].join("\n"),
    0o600,
    0,
    0,
  );
  const dbInit = join(dir, "db-init.sql");
  writeOwned(dbInit, dbInitSql(password), 0o600, dbUid, dbUid);
  return {
    dir,
    jwtKey,
    controllerEtc,
    accountingEtc,
    accountingEtcProjected,
    restapiEtc,
    workerEtc,
    loginEtc,
    empty,
    login: {
      hostKeys,
      sshdConfig,
      authorizedKeys,
      sssdConf,
      clientKey,
      ed25519Pub: readFileSync(hostKeys["ssh_host_ed25519_key.pub"]!, "utf8").trim(),
    },
    dbInit,
    slurmdbdConfNote,
  };
}

export function removeOperatorFiles(files: OperatorFiles): void {
  rmSync(files.dir, { recursive: true, force: true });
}

/** Every pod and service name of the cluster resolves to loopback (the Service DNS stand-in). */
export const ADD_HOSTS = [
  OP.controllerPod,
  OP.controllerService,
  OP.accountingPod,
  OP.accountingService,
  OP.workerPod,
  OP.loginPod,
  OP.restapiPod,
].flatMap((name) => ["--add-host", `${name}:127.0.0.1`]);

/** One container of a pod: a harness Daemon (mounts are host:container[:ro]) with the pod's identity. */
export interface PodContainer extends Daemon {
  hostname: string;
  /** `uid:gid`; absent: the image's user (root). */
  user?: string;
  /** fsGroup: a supplementary group, as Kubernetes adds it. */
  fsGroup?: number;
  privileged?: boolean;
  network?: "host" | "none";
  /** name:address entries replacing ADD_HOSTS (pods with addresses of their own). */
  hosts?: readonly string[];
}

/** `docker run -d` of one container of a pod, as the operator's spec sets it. */
export async function startPodContainer(c: PodContainer): Promise<void> {
  const flags = ["--label", "slinky-test=operator", "--hostname", c.hostname, "--network", c.network ?? "host"];
  if ((c.network ?? "host") === "host") flags.push(...(c.hosts ? c.hosts.flatMap((entry) => ["--add-host", entry]) : ADD_HOSTS));
  if (c.user) flags.push("--user", c.user);
  if (c.fsGroup !== undefined) flags.push("--group-add", String(c.fsGroup));
  if (c.privileged) flags.push("--privileged");
  await runDetached(flags, c);
}

/** A controller pod's emptyDirs and the state volume it mounts. */
export interface ControllerDirs {
  run: string;
  authSocket: string;
  log: string;
  state: string;
}

/** The controller pod's slurmctld container as the operator starts it: 401:401, fsGroup 401, read-only /etc/slurm, its emptyDirs. */
export function controllerContainer(name: string, image: string, hostname: string, etc: string, d: ControllerDirs, hosts?: readonly string[]): PodContainer {
  return {
    name,
    image,
    hostname,
    ...(hosts ? { hosts } : {}),
    user: `${SLURM_UID}:${SLURM_UID}`,
    fsGroup: SLURM_UID,
    mounts: [`${etc}:/etc/slurm:ro`, `${d.run}:/run`, `${d.state}:/var/spool/slurmctld/${OP.cluster}`, `${d.authSocket}:/run/slurmctld`, `${d.log}:/var/log/slurm`],
  };
}

/** The controller pod's directories of an operator cluster's files. */
export const controllerDirs = (f: OperatorFiles): ControllerDirs => ({ run: f.empty.ctldRun, authSocket: f.empty.ctldAuthSocket, log: f.empty.ctldLog, state: f.empty.ctldState });

/**
 * The logfile sidecar's job, written for this test: make the FIFO the daemon
 * logs to (mode 0777) and print whatever is written to it.
 */
export const LOGFILE_SIDECAR = [
  "set -eu",
  'f="$SOCKET"',
  'mkdir -p "$(dirname "$f")"',
  'if [ ! -p "$f" ]; then rm -f "$f"; mkfifo -m 0777 "$f"; fi',
  "trap 'exit 0' TERM",
  'while true; do cat "$f" || true; sleep 1; done',
].join("\n");

/** A sidecar reading `logPath` (a FIFO in the shared log emptyDir). */
export function logfileSidecar(name: string, baseImage: string, hostname: string, logDir: string, logPath: string, user?: string, fsGroup?: number): PodContainer {
  return {
    name,
    image: baseImage,
    hostname,
    user,
    fsGroup,
    network: "none",
    env: { SOCKET: logPath },
    mounts: [`${logDir}:/var/log/slurm`],
    entrypoint: "sh",
    args: ["-c", LOGFILE_SIDECAR],
  };
}

/**
 * What the controller pod's reconfigure sidecar needs from the slurmctld image,
 * exercised once by the test's own script under `tini -g -- bash -c` as the pod's
 * user: the tools it runs, a hash over /etc/slurm (kubelet's ..data dirs skipped),
 * and one `scontrol reconfigure`.
 */
export const RECONFIGURE_CHECK = [
  "set -euo pipefail",
  "for tool in tini bash sha256sum find sort scontrol; do command -v \"$tool\" >/dev/null || { echo \"missing: $tool\"; exit 3; }; done",
  "hash=$(find /etc/slurm -path '*/..*' -prune -o \\( -type f -o -type l \\) -print0 | sort -z | xargs -0 sha256sum | sha256sum)",
  'echo "config hash: ${hash%% *}"',
  "scontrol reconfigure",
  'echo "reconfigured as uid $(id -u)"',
].join("\n");

/** `docker diff` entries outside the given mount points (and their parent directories). */
export async function changesOutsideMounts(container: string, mountPoints: readonly string[]): Promise<string[]> {
  const out = await dockerOk(["diff", container], { timeoutMs: 30_000 });
  const allowed = new Set<string>();
  for (const point of mountPoints) {
    let p = point;
    while (p && p !== "/") {
      allowed.add(p);
      p = p.slice(0, p.lastIndexOf("/")) || "/";
    }
  }
  return out
    .trim()
    .split("\n")
    .filter((line) => line.trim() !== "")
    .filter((line) => {
      const path = line.slice(2).trim();
      return !allowed.has(path) && !mountPoints.some((point) => path.startsWith(`${point}/`));
    });
}

export async function removeOperatorContainers(): Promise<void> {
  for (const name of Object.values(OP_NAMES)) await docker(["rm", "-f", "-v", name], { timeoutMs: 60_000 });
}
