/**
 * Starts the operator-shaped cluster's pods, each container as slurm-operator's
 * builders make it (operator.ts says what each pod gets and what stands in for
 * Kubernetes): the test database, accounting, the controller and its logfile
 * sidecar, restapi, the worker and its logfile sidecar, then login once the
 * worker's node has registered.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { exec, requireRunning, startDaemon, waitFor } from "./cluster.js";
import { controllerContainer, controllerDirs, logfileSidecar, NOBODY_UID, OP, OP_NAMES, type OperatorFiles, type OperatorPorts, SLURM_UID, startPodContainer } from "./operator.js";
import type { ClusterSubject } from "./operator-cluster.js";

const MINUTE = 60_000;

/** Starts every pod's containers of `s`'s images with `f`'s files on `ports`; the database from `dbImage`. */
export async function startOperatorPods(s: ClusterSubject, f: OperatorFiles, ports: OperatorPorts, dbImage: string): Promise<void> {
  const n = OP_NAMES;
  /** A logfile sidecar, started before its daemon: it makes the FIFO `file` in the log emptyDir `logDir`. */
  const startLogfile = async (name: string, hostname: string, logDir: string, file: string, user?: string, fsGroup?: number) => {
    await startPodContainer(logfileSidecar(name, s.baseImage(), hostname, logDir, `/var/log/slurm/${file}`, user, fsGroup));
    await waitFor(`the ${file} FIFO`, async () => (existsSync(join(logDir, file)) ? true : undefined), { timeoutMs: 30_000, intervalMs: 500 });
  };
    const dbSocket = "/run/mysqld/slinky-test.sock";
    await startDaemon({
      name: n.db,
      image: dbImage,
      entrypoint: "mariadbd",
      mounts: [`${f.dbInit}:/etc/mysql/slinky-test-init.sql:ro`],
      args: ["--user=mysql", "--bind-address=127.0.0.1", `--port=${ports.mariadb}`, `--socket=${dbSocket}`, "--skip-name-resolve", "--init-file=/etc/mysql/slinky-test-init.sql"],
    });
    await waitFor(
      "the test database",
      async () => ((await exec(n.db, ["mariadb-admin", `--socket=${dbSocket}`, "ping"], 20_000)).code === 0 ? true : undefined),
      { timeoutMs: 2 * MINUTE, intervalMs: 1_000 },
    );
    const slurm = `${SLURM_UID}:${SLURM_UID}`;
    // accounting: uid/gid 401, fsGroup 401; /etc/slurm read-only, /run an emptyDir.
    await startPodContainer({
      name: n.dbd,
      image: s.ref("slurmdbd"),
      hostname: OP.accountingPod,
      user: slurm,
      fsGroup: SLURM_UID,
      mounts: [`${f.accountingEtc}:/etc/slurm:ro`, `${f.empty.dbdRun}:/run`],
    });
    // controller: the logfile sidecar first (it makes the FIFO), then slurmctld.
    await startLogfile(n.ctldLog, OP.controllerPod, f.empty.ctldLog, "slurmctld.log", slurm, SLURM_UID);
    await startPodContainer(controllerContainer(n.ctld, s.ref("slurmctld"), OP.controllerPod, f.controllerEtc, controllerDirs(f)));
    // restapi: uid/gid 65534, fsGroup 65534, SLURM_JWT=daemon; args replace CMD.
    // (Bound to 127.0.0.1, not the operator's 0.0.0.0: host network.)
    await startPodContainer({
      name: n.restapi,
      image: s.ref("slurmrestd"),
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
    await startLogfile(n.slurmdLog, OP.workerPod, f.empty.workerLog, "slurmd.log");
    await startPodContainer({
      name: n.slurmd,
      image: s.ref("slurmd"),
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
      image: s.ref("login"),
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
}
