/**
 * The compose cluster (examples/compose/) as a user brings it up: Debian's
 * docker-compose 1.29 against a Docker engine in a network namespace of its own
 * (compose-engine.sh: the project's bridge network and published ports never
 * leave it), the images under test loaded into it and chosen by REGISTRY and
 * TAG, as a user overrides the production tags. Checked as a user would: every
 * service healthy by its own healthcheck, `sinfo`, `srun -N2 hostname`, `sbatch`
 * and `sacct`, an MPI job across both nodes, a REST ping with a JWT from
 * `scontrol token`, an ssh login, and `docker compose down -v` leaving nothing.
 *
 * STAND-IN: docker.io/library/mariadb cannot be pulled here;
 * test/images/compose-mariadb/ is Debian's mariadb-server with the part of the
 * official image's interface the project uses (MARIADB_IMAGE overrides it).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildMpiHello, waitFor, withDiagnosis } from "./cluster.js";
import { dockerEnv, dockerOk, ENGINE_DIR, HERE, REPO, run, type RunResult } from "./harness.js";
import type { ClusterSubject } from "./operator-cluster.js";
import { restApiVersion } from "./operator.js";
import { sshArgs } from "./probes.js";

const MINUTE = 60_000;
const PROJECT = "slinkytest";
const COMPOSE_DIR = join(REPO, "examples", "compose");
const ENGINE_SCRIPT = join(HERE, "compose-engine.sh");
const COMPOSE_SOCKET = `unix://${process.env.SLINKY_COMPOSE_ENGINE_DIR ?? "/var/tmp/slinky-compose"}/docker.sock`;
const MARIADB_STANDIN = "slinky-test/compose-mariadb:trixie";
const IMAGES = ["slurmctld", "slurmd", "slurmdbd", "slurmrestd", "login"];
const SERVICES = ["mariadb", "slurmdbd", "slurmctld", "c1", "c2", "login", "slurmrestd"];
const PORTS = { ssh: 2222, rest: 6820 };

export interface ComposeReport {
  upSeconds: number;
  health: Record<string, string>;
  sinfo: string;
  srun: string;
  sacct: string;
  mpi: string;
  restPing: string;
  leftAfterDown: string[];
  passed: boolean;
}

/** REGISTRY and TAG that make the compose file's `${REGISTRY}/<image>:${TAG}` name `ref(image)` for every image. */
export function registryAndTag(ref: (image: string) => string): { registry: string; tag: string } {
  const first = /^(.+)\/slurmctld:([^/:]+)$/.exec(ref("slurmctld"));
  if (!first) throw new Error(`cannot split ${ref("slurmctld")} into REGISTRY/slurmctld:TAG`);
  const [, registry, tag] = first as unknown as [string, string, string];
  for (const image of IMAGES) {
    if (ref(image) !== `${registry}/${image}:${tag}`) throw new Error(`${ref(image)} is not ${registry}/${image}:${tag}`);
  }
  return { registry, tag };
}

/**
 * The compose cluster's tests, in a describe block of their own. `noMpi` names
 * why the images cannot run the MPI job (the test is then skipped by that name).
 */
export function composeTests(s: ClusterSubject, report: ComposeReport, noMpi?: string): void {
  describe.sequential(`compose cluster (examples/compose) of ${s.label}, in its own network namespace`, () => {
    let enginePid: number | null = null;
    let env: NodeJS.ProcessEnv = {};
    let dir = "";
    let up = false;
    const composeEnv = () => ({ ...process.env, ...env, DOCKER_HOST: COMPOSE_SOCKET });
    const compose = (args: string[], timeoutMs = 2 * MINUTE): Promise<RunResult> =>
      run("docker-compose", ["-p", PROJECT, "-f", join(COMPOSE_DIR, "compose.yaml"), ...args], { timeoutMs, env: composeEnv(), cwd: COMPOSE_DIR });
    const inService = (service: string, command: string[], timeoutMs = MINUTE) => compose(["exec", "-T", service, ...command], timeoutMs);
    const onEngine = (args: string[], timeoutMs = MINUTE) => run("docker", args, { timeoutMs, env: composeEnv() });
    const inNamespace = (command: string[], timeoutMs = MINUTE) => run(ENGINE_SCRIPT, ["exec", ...command], { timeoutMs });
    const containerOf = async (service: string) => (await compose(["ps", "-q", service])).stdout.trim();
    const diagnose = async () => {
      const ps = await compose(["ps"]);
      const logs = await compose(["logs", "--no-color", "--tail", "60"]);
      return `${ps.stdout}\n${logs.stdout}${logs.stderr}`;
    };
    const withLogs = (checks: () => Promise<void>) => withDiagnosis(diagnose, checks);
    /** What the project left on the engine: containers, volumes, networks with its label. */
    const leftovers = async () => {
      const label = `label=com.docker.compose.project=${PROJECT}`;
      const out: string[] = [];
      for (const [kind, args] of [
        ["container", ["ps", "-a", "-q", "--filter", label]],
        ["volume", ["volume", "ls", "-q", "--filter", label]],
        ["network", ["network", "ls", "-q", "--filter", label]],
      ] as const) {
        const r = await onEngine([...args]);
        for (const id of r.stdout.trim().split("\n").filter(Boolean)) out.push(`${kind} ${id}`);
      }
      return out;
    };

    afterAll(async () => {
      if (up) await compose(["down", "-v", "--timeout", "20"], 5 * MINUTE);
      if (enginePid !== null) {
        const stop = await run(ENGINE_SCRIPT, ["stop", String(enginePid)], { timeoutMs: 3 * MINUTE });
        if (stop.code !== 0) throw new Error(`compose engine did not stop: ${stop.stderr}`);
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    }, 10 * MINUTE);

    it(
      "docker compose up -d with REGISTRY and TAG naming the images under test: every service healthy by its own healthcheck, init done",
      async () => {
        const started = await run(ENGINE_SCRIPT, ["start"], { timeoutMs: 3 * MINUTE });
        expect(started.code, started.stderr).toBe(0);
        enginePid = Number(/^started (\d+)$/m.exec(started.stdout)?.[1]);
        dir = mkdtempSync(join(ENGINE_DIR, "..", "slinky-compose-test-"));
        // The images under test and the database stand-in, loaded (nothing is pulled: the namespace has no way out).
        await dockerOk(["build", "--network", "host", "--build-arg", `BASE_IMAGE=${s.baseImage()}`, "-t", MARIADB_STANDIN, join(HERE, "compose-mariadb")], {
          timeoutMs: 15 * MINUTE,
        });
        const refs = [...IMAGES.map((image) => s.ref(image)), MARIADB_STANDIN];
        const load = await run("bash", ["-c", 'set -o pipefail; DOCKER_HOST="$FROM" docker save "$@" | DOCKER_HOST="$TO" docker load -q', "load", ...refs], {
          timeoutMs: 15 * MINUTE,
          env: { ...process.env, FROM: dockerEnv.DOCKER_HOST, TO: COMPOSE_SOCKET },
        });
        expect(load.code, load.stderr).toBe(0);
        // A user's key for the login node.
        const key = join(dir, "id_ed25519");
        const keygen = await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "compose-test", "-f", key], { timeoutMs: MINUTE });
        expect(keygen.code, keygen.stderr).toBe(0);
        const { registry, tag } = registryAndTag(s.ref);
        env = {
          REGISTRY: registry,
          TAG: tag,
          MARIADB_IMAGE: MARIADB_STANDIN,
          SSH_AUTHORIZED_KEYS: readFileSync(`${key}.pub`, "utf8").trim(),
          LOGIN_SSH_PORT: String(PORTS.ssh),
          SLURMRESTD_PORT: String(PORTS.rest),
        };
        up = true;
        await withLogs(async () => {
          const t0 = Date.now();
          const result = await compose(["up", "-d"], 15 * MINUTE);
          expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
          const health = await waitFor(
            "every service healthy",
            async () => {
              const states: Record<string, string> = {};
              for (const service of SERVICES) {
                const id = await containerOf(service);
                const r = await onEngine(["inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id]);
                states[service] = r.stdout.trim();
              }
              return Object.values(states).every((state) => state === "running healthy") ? states : undefined;
            },
            { timeoutMs: 6 * MINUTE, intervalMs: 3_000 },
          );
          report.upSeconds = Math.round((Date.now() - t0) / 1000);
          report.health = health;
          const init = await onEngine(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", await containerOf("init")]);
          expect(init.stdout.trim()).toBe("exited 0");
          // Started as root, as compose runs it: slurmctld itself is SlurmUser's.
          const owners = await inService("slurmctld", ["ps", "-o", "ruser=,euser=", "-C", "slurmctld"]);
          const rows = owners.stdout.trim().split("\n").map((row) => row.trim().split(/\s+/).join(" "));
          expect(new Set(rows)).toEqual(new Set(["slurm slurm"]));
        });
      },
      30 * MINUTE,
    );

    it("sinfo shows both nodes idle; srun -N2 hostname runs on c1 and c2", async () => {
      expect(up).toBe(true);
      await withLogs(async () => {
        report.sinfo = await waitFor(
          "both nodes idle",
          async () => {
            const r = await inService("login", ["sinfo", "--noheader", "-N", "-o", "%N %T"]);
            return r.code === 0 && /^c1 idle$/m.test(r.stdout) && /^c2 idle$/m.test(r.stdout) ? r.stdout.trim() : undefined;
          },
          { timeoutMs: 3 * MINUTE },
        );
        const srun = await inService("login", ["srun", "-N2", "-t", "1", "--immediate=60", "hostname"], 2 * MINUTE);
        report.srun = `${srun.stdout}${srun.stderr}`.trim();
        expect(srun.code, report.srun).toBe(0);
        expect(srun.stdout.trim().split("\n").sort()).toEqual(["c1", "c2"]);
      });
    });

    it("sbatch from the shared directory; sacct shows the job COMPLETED and its output is on the login node", async () => {
      expect(up).toBe(true);
      await withLogs(async () => {
        const sbatch = await inService("login", ["sbatch", "--parsable", "-N1", "-o", "/shared/job-%j.out", "--wrap", "echo ran on $(hostname)"]);
        expect(sbatch.code, sbatch.stderr).toBe(0);
        const id = sbatch.stdout.trim().split(";")[0]!;
        report.sacct = await waitFor(
          "sacct to show the job COMPLETED",
          async () => {
            const r = await inService("login", ["sacct", "-n", "-X", "-P", "-j", id, "-o", "JobID,State,NodeList"]);
            return r.code === 0 && r.stdout.includes(`${id}|COMPLETED|`) ? r.stdout.trim() : undefined;
          },
          { timeoutMs: 3 * MINUTE },
        );
        const out = await inService("login", ["cat", `/shared/job-${id}.out`]);
        expect(out.stdout.trim()).toMatch(/^ran on c[12]$/);
      });
    });

    it.skipIf(noMpi !== undefined)(noMpi ? `skipped: ${noMpi}` : "an Open MPI job across both nodes through mpi/pmix", async () => {
      expect(up).toBe(true);
      await withLogs(async () => {
        // The test's MPI program (mpicc outside the images), put where both nodes see it.
        const binary = await buildMpiHello(s.baseImage(), join(dir, "mpi"));
        const cp = await onEngine(["cp", binary, `${await containerOf("login")}:/shared/mpi-hello`]);
        expect(cp.code, cp.stderr).toBe(0);
        const mpi = await inService("login", ["srun", "--mpi=pmix", "-N2", "-n2", "-t", "2", "--immediate=60", "/shared/mpi-hello"], 3 * MINUTE);
        report.mpi = `${mpi.stdout}${mpi.stderr}`.trim();
        expect(mpi.code, report.mpi).toBe(0);
        // Both ranks of one 2-rank job, one on each node (which rank lands where is Slurm's choice).
        const ranks = [...mpi.stdout.matchAll(/^mpi-hello: rank (\d) of (\d) on (\S+)$/gm)].map((m) => ({ rank: m[1], size: m[2], host: m[3] }));
        expect(ranks.map((r) => `${r.rank}/${r.size}`).sort(), report.mpi).toEqual(["0/2", "1/2"]);
        expect(ranks.map((r) => r.host).sort(), report.mpi).toEqual(["c1", "c2"]);
      });
    });

    it("slurmrestd answers a ping with the JWT `scontrol token` gives (and refuses a forged one), on its published port", async () => {
      expect(up).toBe(true);
      await withLogs(async () => {
        const token = await inService("slurmctld", ["scontrol", "token", "username=root", "lifespan=600"]);
        expect(token.code, token.stderr).toBe(0);
        const jwt = /SLURM_JWT=(\S+)/.exec(token.stdout)?.[1];
        expect(jwt, token.stdout).toBeDefined();
        const url = `http://127.0.0.1:${PORTS.rest}/slurm/${restApiVersion(s.version())}/ping`;
        const ping = (value: string) =>
          inNamespace(["curl", "-sS", "-m", "20", "-w", "\\n%{http_code}", "-H", "X-SLURM-USER-NAME: root", "-H", `X-SLURM-USER-TOKEN: ${value}`, url]);
        // The first pings after a job can time out inside slurmrestd (pinged DOWN): a user retries.
        const split = (r: RunResult) => {
          const at = r.stdout.lastIndexOf("\n");
          return { body: r.stdout.slice(0, at), code: r.stdout.slice(at + 1) };
        };
        report.restPing = await waitFor(
          "slurmrestd's ping to say slurmctld is UP",
          async () => {
            const { body, code } = split(await ping(jwt!));
            if (code !== "200") return undefined;
            const pings = (JSON.parse(body) as { pings?: { hostname?: string; pinged?: string }[] }).pings ?? [];
            return pings[0]?.hostname === "slurmctld" && pings[0]?.pinged === "UP" ? JSON.stringify(pings) : undefined;
          },
          { timeoutMs: 2 * MINUTE, intervalMs: 2_000 },
        );
        const [head, payload] = jwt!.split(".");
        const forged = split(await ping(`${head}.${payload}.${Buffer.from("not the signature").toString("base64url")}`));
        expect(forged.code === "200" && /"pinged"\s*:\s*"UP"/.test(forged.body), forged.body).toBe(false);
      });
    });

    it("ssh to the login node's published port with the user's key, the host key the init made", async () => {
      expect(up).toBe(true);
      await withLogs(async () => {
        const pub = await inService("login", ["cat", "/etc/ssh/keys/ssh_host_ed25519_key.pub"]);
        const ssh = await inNamespace(
          ["ssh", ...sshArgs({ identity: join(dir, "id_ed25519"), port: PORTS.ssh, hostKey: pub.stdout, knownHosts: join(dir, "known_hosts"), command: "sinfo --noheader -o %D" })],
          2 * MINUTE,
        );
        expect(ssh.code, `${ssh.stdout}${ssh.stderr}`).toBe(0);
        expect(ssh.stdout.trim()).toBe("2");
      });
    });

    it("docker compose down -v leaves no container, volume or network of the project", async () => {
      expect(up).toBe(true);
      const down = await compose(["down", "-v", "--timeout", "20"], 5 * MINUTE);
      expect(down.code, down.stderr).toBe(0);
      up = false;
      report.leftAfterDown = await leftovers();
      expect(report.leftAfterDown).toEqual([]);
      report.passed = true;
    });
  });
}
