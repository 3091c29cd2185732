// Shared pieces for the CI tests: a throw-away git repo holding copies of the CI files,
// the gitlab-ci-local runner, and a STAND-IN Dagger CLI tarball (the real CLI cannot be
// downloaded on this machine; the stand-in is a tiny shell script named as such).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const GCL = join(ROOT, "node_modules", ".bin", "gitlab-ci-local");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Environment without anything that could point git or the tools at the project's own repo. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("GIT_") || k.startsWith("DAGGER_") || k.startsWith("CI_")) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((done) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        env: opts.env ?? cleanEnv(),
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        done({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

export const sha256 = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex");

export const daggerArch = (): string => (process.arch === "arm64" ? "arm64" : "amd64");

/** Version pinned in .gitlab-ci.yml (DAGGER_VERSION). */
export function pinnedDaggerVersion(): string {
  const m = /^\s*DAGGER_VERSION:\s*"([^"]+)"\s*$/m.exec(readFileSync(join(ROOT, ".gitlab-ci.yml"), "utf8"));
  if (!m?.[1]) throw new Error("DAGGER_VERSION not found in .gitlab-ci.yml");
  return m[1];
}

export interface StandIn {
  dir: string;
  tarball: string;
  url: string;
  sha256: string;
}

/**
 * Build a STAND-IN for the Dagger release tarball: `dagger_v<version>_linux_<arch>.tar.gz`
 * holding a shell script called `dagger`. `dagger version` prints `reportVersion`;
 * `dagger call ...` writes its argv (one per line) to $STANDIN_ARGV, a few facts about its
 * environment to $STANDIN_ENV (a hash of the password, never the password), writes
 * report/report.md and report/status (STANDIN_STATUS, default passed) like `export --path report` would, and exits $STANDIN_EXIT (default 0).
 */
export async function makeStandIn(version: string, reportVersion = version): Promise<StandIn> {
  const dir = mkdtempSync(join(tmpdir(), "dagger-standin-"));
  const pkg = join(dir, "pkg");
  mkdirSync(pkg);
  const script = [
    "#!/bin/sh",
    "# STAND-IN for the Dagger CLI, used only by test/ci (the real CLI cannot run on this machine).",
    'case "$1" in',
    `  version) echo "dagger v${reportVersion} (stand-in) linux/${daggerArch()}" ;;`,
    "  call)",
    '    printf "%s\\n" "$@" > "$STANDIN_ARGV"',
    '    pw_hash=$(printf "%s" "${CI_REGISTRY_PASSWORD:-}" | sha256sum | cut -d" " -f1)',
    '    { echo "PASSWORD_SHA256=$pw_hash"; echo "DAGGER_NO_NAG=${DAGGER_NO_NAG:-}"; echo "DOCKER_HOST=${DOCKER_HOST:-}";',
    '      echo "DOCKER_TLS_VERIFY=${DOCKER_TLS_VERIFY:-}"; echo "DOCKER_CERT_PATH=${DOCKER_CERT_PATH:-}";',
    '      echo "_EXPERIMENTAL_DAGGER_RUNNER_HOST=${_EXPERIMENTAL_DAGGER_RUNNER_HOST:-}"; } > "$STANDIN_ENV"',
    "    mkdir -p report",
    '    echo "# stand-in report" > report/report.md',
    '    echo "${STANDIN_STATUS:-passed}" > report/status',
    '    exit "${STANDIN_EXIT:-0}" ;;',
    '  *) echo "stand-in dagger: unsupported $1" >&2; exit 2 ;;',
    "esac",
    "",
  ].join("\n");
  writeFileSync(join(pkg, "dagger"), script);
  chmodSync(join(pkg, "dagger"), 0o755);
  const tarball = join(dir, `dagger_v${version}_linux_${daggerArch()}.tar.gz`);
  const tar = await run("tar", ["-czf", tarball, "-C", pkg, "dagger"]);
  if (tar.code !== 0) throw new Error(`tar failed: ${tar.stderr}`);
  return { dir, tarball, url: `file://${tarball}`, sha256: sha256(readFileSync(tarball)) };
}

/** A throw-away git repo with copies of the CI files, an `origin` whose HEAD is main. */
export async function makeCiRepo(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "gcl-repo-"));
  cpSync(join(ROOT, ".gitlab-ci.yml"), join(dir, ".gitlab-ci.yml"));
  cpSync(join(ROOT, "ci"), join(dir, "ci"), { recursive: true });
  writeFileSync(join(dir, ".gitignore"), ".gitlab-ci-local/\nreport/\n");
  const git = async (...args: string[]) => {
    const r = await run("git", ["-c", "user.name=ci-test", "-c", "user.email=ci-test@example.invalid", ...args], {
      cwd: dir,
    });
    if (r.code !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim();
  };
  await git("init", "-q", "-b", "main");
  await git("add", "-A");
  await git("commit", "-q", "-m", "ci files");
  await git("remote", "add", "origin", "git@gitlab.com:example-group/slinky-containers.git");
  await git("update-ref", "refs/remotes/origin/main", "HEAD");
  await git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main");
  mkdirSync(join(dir, ".gcl-home"));
  return dir;
}

export async function checkout(repo: string, branch: string): Promise<void> {
  const r = await run("git", ["checkout", "-q", "-B", branch], { cwd: repo });
  if (r.code !== 0) throw new Error(`git checkout ${branch}: ${r.stderr}`);
}

const PREDEFINED = [
  "CI_PIPELINE_SOURCE",
  "CI_COMMIT_BRANCH",
  "CI_COMMIT_TAG",
  "CI_DEFAULT_BRANCH",
  "CI_COMMIT_REF_NAME",
  "CI_MERGE_REQUEST_IID",
  "CI_REGISTRY_USER",
  "CI_REGISTRY_PASSWORD",
].join(",");

/** Run gitlab-ci-local in `repo` with its HOME inside the repo (no user config leaks in). */
export function gcl(repo: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run(GCL, ["--home", join(repo, ".gcl-home"), "--ignore-predefined-vars", PREDEFINED, "--no-color", ...args], {
    cwd: repo,
    env: cleanEnv(env),
    timeoutMs: 90_000,
  });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
