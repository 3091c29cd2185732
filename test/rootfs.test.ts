/**
 * The images' entrypoint library and daemon launcher
 * (dockerfiles/debian/rootfs/usr/local/lib/slinky/), run for real by bash on
 * this machine: how container arguments are read (slurm-operator's quoted
 * `--conf` and, from its main branch, `Topology='"$SLINKY_TOPOLOGY"'`), what
 * slurm.conf says SlurmUser is, and that a daemon the entrypoint assigned to a
 * user is started as that user when the container runs as root (slurmctld:
 * Slurm >= 25.05 makes `slurmctld --systemd` fatal under any other uid).
 * The image harness (test/images/) checks the same inside the built images.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const LIB = join(import.meta.dirname, "..", "dockerfiles", "debian", "rootfs", "usr", "local", "lib", "slinky");
const isRoot = process.getuid?.() === 0;
const work = mkdtempSync(join(tmpdir(), "slinky-rootfs-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The scripts' environment: this PATH, and their run directory in the test's own folder. */
const ENV = { PATH: process.env.PATH ?? "/usr/bin:/bin", SLINKY_RUN: join(work, "run") };

/** Runs `script` in bash after sourcing entrypoint-lib.sh; stdout, stderr and exit code. */
async function lib(script: string, env: Record<string, string> = {}) {
  const result = await run("bash", ["-c", `set -euo pipefail; . "${LIB}/entrypoint-lib.sh"; ${script}`], {
    env: { ...ENV, ...env },
  }).then(
    (r) => ({ ...r, code: 0 }),
    (error: { stdout: string; stderr: string; code: number }) => error,
  );
  return { stdout: result.stdout, stderr: result.stderr, code: result.code };
}

/** The container arguments as container_args reads them, one per line. */
async function readArgs(args: string[], env: Record<string, string> = {}) {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  return lib(`container_args ${quoted}; printf '%s\\n' "\${CARGS[@]}"`, env);
}

describe("entrypoint-lib.sh: container arguments read as shell words, nothing evaluated", () => {
  it("slurm-operator v1.1.2's quoted --conf value becomes one argument without its quotes", async () => {
    const r = await readArgs(["--conf", "'Features=a,b Weight=10'"]);
    expect(r.stdout).toBe("--conf\nFeatures=a,b Weight=10\n");
  });

  it("the operator's main-branch Topology='\"$SLINKY_TOPOLOGY\"' expands from the environment", async () => {
    const arg = `'Features=gpu Topology='"$SLINKY_TOPOLOGY"''`;
    const r = await readArgs(["--conf", arg], { SLINKY_TOPOLOGY: "topo-a:block1" });
    expect(r.stdout).toBe("--conf\nFeatures=gpu Topology=topo-a:block1\n");
    const braces = await readArgs(["x${SLINKY_TOPOLOGY}y"], { SLINKY_TOPOLOGY: "t" });
    expect(braces.stdout).toBe("xty\n");
  });

  it("single quotes keep $NAME, no word splitting, globbing or command substitution", async () => {
    const r = await readArgs(["'$HOME'", '"a  b"', "*", "$UNSET_VAR_X", "a\\ b", "100$"], { HOME: "/h" });
    expect(r.stdout).toBe("$HOME\na  b\n*\n\na b\n100$\n");
    const sub = await readArgs(["$(touch /tmp/never)"]);
    expect(sub.code).not.toBe(0);
    expect(sub.stderr).toContain("only $NAME and ${NAME} are expanded");
    const unbalanced = await readArgs(["'abc"]);
    expect(unbalanced.code).not.toBe(0);
    expect(unbalanced.stderr).toContain("unbalanced ' quote in argument: 'abc");
  });

  it("drop_empty_conf_item: an empty Topology= goes, other items stay; an emptied --conf goes", async () => {
    const script = (args: string) => `ARGS=(${args}); drop_empty_conf_item Topology; printf '%s\\n' "\${ARGS[@]}"`;
    const r = await lib(script(`-Z --conf 'Features=gpu Topology= Weight=1' --conf-server h:6817`));
    expect(r.stdout).toBe("-Z\n--conf\nFeatures=gpu Weight=1\n--conf-server\nh:6817\n");
    const kept = await lib(script(`--conf=Topology=t1`));
    expect(kept.stdout).toBe("--conf\nTopology=t1\n");
    const emptied = await lib(script(`-Z --conf Topology=`));
    expect(emptied.stdout).toBe("-Z\n");
  });
});

describe("entrypoint-lib.sh: slurm.conf's SlurmUser", () => {
  const conf = join(work, "slurm.conf");

  it("reads keys case-insensitively, the last one wins, comments ignored", async () => {
    writeFileSync(conf, "# SlurmUser=wrong\nslurmuser=first\nClusterName=c StateSaveLocation=/s # SlurmUser=x\nSlurmUser=nobody\n");
    const r = await lib("slurm_conf_value SlurmUser; slurm_conf_value statesavelocation; slurm_user", { SLURM_CONF: conf });
    expect(r.stdout).toBe("nobody\n/s\nnobody\n");
  });

  it("defaults to slurm without a SlurmUser line or a slurm.conf, and refuses a user the image lacks", async () => {
    writeFileSync(conf, "ClusterName=c\n");
    const none = await lib("slurm_conf_value SlurmUser", { SLURM_CONF: conf });
    expect(none.stdout).toBe("\n");
    writeFileSync(conf, "SlurmUser=no-such-user-slinky\n");
    const bad = await lib("slurm_user", { SLURM_CONF: conf });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("SlurmUser 'no-such-user-slinky' (slurm.conf) is not a user of this image");
  });

  it.skipIf(!isRoot)("as root, slurm_user_paths makes StateSaveLocation and the log file owned by SlurmUser", async () => {
    const state = join(work, "state", "slurmctld");
    const logFile = join(work, "log", "slurmctld.log");
    writeFileSync(conf, `SlurmUser=nobody\nStateSaveLocation=${state}\nSlurmctldLogFile=${logFile}\n`);
    const r = await lib("SLURM_USER=nobody; slurm_user_paths StateSaveLocation SlurmctldLogFile", { SLURM_CONF: conf });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(state).uid).toBe(65534);
    expect(statSync(logFile).uid).toBe(65534);
  });
});

/**
 * daemon-exec.sh as a container's child of PID 1: in a PID namespace of its own
 * (bash is PID 1 there), so its switch to PID 1's stdout is its own stdout and
 * never this machine's init.
 */
function daemonExec(args: string[]) {
  return run("unshare", ["--pid", "--fork", "--mount-proc", "bash", join(LIB, "daemon-exec.sh"), ...args], { env: ENV });
}

describe("daemon-exec.sh: the daemon runs as the user the entrypoint chose (root containers)", () => {
  it.skipIf(!isRoot)("run_as NAME nobody: the daemon's real and effective uid and gid are nobody's, with its groups", async () => {
    const prepared = await lib("run_as probe nobody; save_args probe extra-arg");
    expect(prepared.code, prepared.stderr).toBe(0);
    const r = await daemonExec(["probe", "sh", "-c", 'echo "$(id -ru) $(id -u) $(id -rg) $(id -g) $1"', "sh"]);
    const gid = (await run("id", ["-g", "nobody"])).stdout.trim();
    expect(r.stdout).toContain("daemon-exec.sh: exec setpriv --reuid=nobody");
    expect(r.stdout.trim().split("\n").pop()).toBe(`65534 65534 ${gid} ${gid} extra-arg`);
  });

  it.skipIf(!isRoot)("without run_as the daemon keeps the container's user (root here)", async () => {
    await lib("save_args plain");
    const r = await daemonExec(["plain", "id", "-u"]);
    expect(r.stdout.trim().split("\n").pop()).toBe("0");
  });
});
