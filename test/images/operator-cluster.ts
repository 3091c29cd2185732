/**
 * The operator-shaped cluster's checks (operator.ts says what each pod gets and
 * what stands in for Kubernetes), for any set of images that keeps the
 * contract: the images built from the recipe (images.test.ts) and Debian's build
 * of a newer Slurm under the images' own entrypoints (debian-slurm.test.ts).
 * Runs after the mini cluster, whose containers it removes first: both use the
 * harness's ports.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildTestDatabase, DEFAULT_PORTS, exec, logsOf, logsOfAll, removeContainers, requireRunning, waitFor, withDiagnosis } from "./cluster.js";
import { docker, dockerOk, ENGINE_DIR, run } from "./harness.js";
import { MINI_NAMES } from "./mini-cluster.js";
import { startOperatorPods } from "./operator-pods.js";
import { hs256Jwt, httpGet, httpProbe, sshArgs, tcpProbe } from "./probes.js";
import {
  atLeast,
  changesOutsideMounts,
  controllerContainer,
  controllerDirs,
  emptyDir,
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
  writeOperatorFiles,
} from "./operator.js";

const MINUTE = 60_000;

/** A set of images the cluster tests start: what they are, and where they put their findings. */
export interface ClusterSubject {
  /** What is under test, for the tests' names. */
  label: string;
  /** Slurm's line (X.Y or X.Y.Z), known when the tests are collected: it decides the checks that need 25.11. */
  line: string;
  /** Slurm's full version, once the images are built. */
  version: () => string;
  /** The image of a target (slurmctld, slurmd, ...), once built. */
  ref: (target: string) => string;
  /** The base image of the test's own containers (database, logfile sidecars). */
  baseImage: () => string;
}

export interface OperatorReport {
  passed: boolean;
  checks: Record<string, string>;
  needsSlurm2511: string[];
}

/** The operator-shaped cluster's tests, in a describe block of their own. */
export function operatorClusterTests(s: ClusterSubject, report: OperatorReport): void {
  describe.sequential(`operator-shaped cluster of ${s.label} (slurm-operator v1.1.2 pod specs; v1.2.1 slurm.conf, restart and preStop)`, () => {
    const has2511 = atLeast(s.line, "25.11");
    const version = s.line;
    const ports: OperatorPorts = { ...DEFAULT_PORTS, slurmrestd: Number(process.env.SLINKY_TEST_SLURMRESTD_PORT ?? 16820) };
    const n = OP_NAMES;
    let files: OperatorFiles | undefined;
    let started = false;
    const ref = (target: string) => s.ref(target);
    const inLogin = (command: string[], timeoutMs = 60_000) => exec(n.login, command, timeoutMs);
    const diagnose = () => logsOfAll(Object.values(n));
    const note = (key: string, value: string) => {
      report.checks[key] = value;
    };
    if (!has2511) report.needsSlurm2511 = Object.values(SLURM_2511_FEATURES);

    afterAll(async () => {
      await removeOperatorContainers();
      if (files) removeOperatorFiles(files);
    }, 5 * MINUTE);

    it(
      "starts every pod's containers with the operator's users, groups, capabilities, args, env and mounts; every daemon stays up",
      async () => {
        // The mini cluster's daemons hold the same ports.
        await removeContainers(Object.values(MINI_NAMES));
        await removeOperatorContainers();
        const db = await buildTestDatabase(s.baseImage());
        files = await writeOperatorFiles(join(ENGINE_DIR, "..", "slinky-cluster"), ports, db.mysqlUid, s.version());
        note("slurmdbd.conf", files.slurmdbdConfNote);
        const f = files;
        await withDiagnosis(diagnose, async () => {
          await startOperatorPods(s, f, ports, db.ref);
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
          const slurm = `${SLURM_UID}:${SLURM_UID}`;
          expect(await owner(n.ctld, "slurmctld")).toBe(slurm);
          expect(await owner(n.dbd, "slurmdbd")).toBe(slurm);
          expect(await owner(n.restapi, "slurmrestd")).toBe(`${NOBODY_UID}:${NOBODY_UID}`);
          expect(await owner(n.slurmd, "slurmd")).toBe("0:0");
          expect(await owner(n.login, "sackd")).toBe(slurm);
          expect(await owner(n.login, "sshd")).toBe("0:0");
          started = true;
        });
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

    it("a user logs in over ssh (the operator's sshd_config, root's authorized key from the LoginSet) and runs srun", async () => {
      expect(started).toBe(true);
      // The client knows only the mounted host key: a host key made at start would be refused.
      const args = sshArgs({
        identity: files!.login.clientKey,
        port: ports.loginSsh,
        hostKey: files!.login.ed25519Pub,
        knownHosts: join(files!.dir, "known_hosts"),
        command: "srun -N1 -t 1 --immediate=60 printenv SLURMD_NODENAME",
      });
      const ssh = await run("ssh", args, { timeoutMs: 2 * MINUTE });
      note("ssh", `${ssh.stdout}${ssh.stderr}`.trim());
      expect(ssh.code, `${ssh.stdout}${ssh.stderr}`).toBe(0);
      expect(ssh.stdout.trim()).toBe(OP.workerPod);
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

    it("the controller pod rescheduled (no HA): a new container with fresh emptyDirs on the same state volume recovers the jobs and the node", async () => {
      expect(started).toBe(true);
      const running = await inLogin(["sbatch", "--parsable", "-J", "reschedule-running", "-t", "2", "--wrap", "sleep 20"], 30_000);
      const held = await inLogin(["sbatch", "--parsable", "-H", "-J", "reschedule-held", "--wrap", "true"], 30_000);
      expect(running.code, running.stderr).toBe(0);
      expect(held.code, held.stderr).toBe(0);
      const [runId, heldId] = [running.stdout, held.stdout].map((out) => out.trim().split(";")[0]!);
      await waitFor("the job to run", async () => ((await inLogin(["squeue", "-h", "-j", runId!, "-o", "%T"], 30_000)).stdout.trim() === "RUNNING" ? true : undefined), {
        timeoutMs: MINUTE,
      });
      // The pod is deleted (SIGTERM, then the container is gone) and created on another node:
      // the same StateSaveLocation volume, new emptyDirs for /run and the auth socket.
      await dockerOk(["stop", "--time", "30", n.ctld], { timeoutMs: 2 * MINUTE });
      await removeContainers([n.ctld]);
      for (const dir of [files!.empty.ctldRun, files!.empty.ctldAuthSocket]) {
        rmSync(dir, { recursive: true, force: true });
        emptyDir(dir, SLURM_UID);
      }
      const since = Math.floor(Date.now() / 1000);
      await startPodContainer(controllerContainer(n.ctld, s.ref("slurmctld"), OP.controllerPod, files!.controllerEtc, controllerDirs(files!)));
      await waitFor(
        "the new controller to answer",
        async () => {
          await requireRunning([n.ctld, n.ctldLog]);
          const r = await inLogin(["scontrol", "ping"], 30_000);
          return r.code === 0 && /is UP/.test(r.stdout) ? true : undefined;
        },
        { timeoutMs: 2 * MINUTE },
      );
      const log = await docker(["logs", "--since", String(since), n.ctldLog], { timeoutMs: 30_000 });
      const recovered = /Recovered information about (\d+) jobs/.exec(`${log.stdout}${log.stderr}`);
      expect(Number(recovered?.[1] ?? 0), "slurmctld's log of the new pod").toBeGreaterThanOrEqual(2);
      expect((await inLogin(["squeue", "-h", "-j", heldId!, "-o", "%T"], 30_000)).stdout.trim()).toBe("PENDING");
      // The running job finishes on the node, which stays up (not DOWN) and idle.
      const done = await waitFor(
        "the running job to complete",
        async () => {
          const r = await inLogin(["sacct", "-n", "-X", "-P", "-j", runId!, "-o", "State"], 30_000);
          return r.stdout.trim() === "COMPLETED" ? r.stdout.trim() : undefined;
        },
        { timeoutMs: 2 * MINUTE },
      );
      const node = await waitFor(
        "the node idle",
        async () => {
          const r = await inLogin(["sinfo", "--noheader", "-N", "-o", "%N %T"], 30_000);
          return r.stdout.includes(`${OP.workerPod} idle`) ? r.stdout.trim() : undefined;
        },
        { timeoutMs: MINUTE },
      );
      note("rescheduled", `${recovered?.[0]}; running job ${done}; ${node}`);
      await inLogin(["scancel", heldId!], 30_000);
    }, 10 * MINUTE);

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
      report.passed = true;
    });
  });
}
