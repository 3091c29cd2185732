// .gitlab-ci.yml checked with gitlab-ci-local 4.73.0 (GitLab's JSON schema, its rules engine,
// and a real run of the job's script with the shell executor) in a throw-away git repo.
//
// Two honest limits of gitlab-ci-local, worked around in the open:
// - It does not drop a pipeline on `workflow:rules` (it only applies their variables), so the
//   workflow rules are evaluated through a probe job whose rules ARE the workflow rules
//   (`!reference [workflow, rules]`) in a file that includes the real .gitlab-ci.yml.
// - The job's docker:dind service cannot run here (no Docker Hub), so the run test includes
//   the real .gitlab-ci.yml and overrides only `services: []`; the script runs with the
//   shell executor against a STAND-IN Dagger CLI (see helpers.ts) and a stand-in `apk`.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { checkout, gcl, makeCiRepo, makeStandIn, pinnedDaggerVersion, removeDir, ROOT, sha256, type StandIn } from "./helpers.js";

interface ListedJob {
  name: string;
  stage: string;
  when: string;
  rules?: Array<{ if?: string; when?: string; interruptible?: boolean }>;
}

let repo: string;
let standIn: StandIn;
const ciYaml = parse(readFileSync(join(ROOT, ".gitlab-ci.yml"), "utf8")) as Record<string, any>;
const jobNames = Object.keys(ciYaml).filter(
  (k) => !["workflow", "stages", "variables", "default", "include", "image", "services", "cache"].includes(k) && !k.startsWith("."),
);
const JOB: string = jobNames[0] ?? "<no job>";

/** Schema validation (about 1 s a call) only where a test is about validity. */
async function listJobs(file: string, args: string[] = [], validate = false): Promise<ListedJob[]> {
  const r = await gcl(repo, ["--file", file, "--list-json", `--json-schema-validation=${validate}`, ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ListedJob[];
}

/** Jobs GitLab would create for these variables: workflow probe must pass, then job rules. */
async function jobsThatRun(args: string[] = []): Promise<{ workflow: string; jobs: string[] }> {
  const listed = await listJobs("probe.gitlab-ci.yml", args);
  const probe = listed.find((j) => j.name === "workflow-probe");
  if (!probe) throw new Error("probe job missing");
  const jobs = listed.filter((j) => !j.name.endsWith("-probe") && j.when !== "never").map((j) => j.name);
  return { workflow: probe.when, jobs: probe.when === "never" ? [] : jobs };
}

beforeAll(async () => {
  repo = await makeCiRepo();
  const rule0 = ciYaml[JOB]?.rules?.[0]?.if as string | undefined;
  writeFileSync(
    join(repo, "probe.gitlab-ci.yml"),
    [
      "include:",
      "  - local: .gitlab-ci.yml",
      "workflow-probe:",
      "  stage: build",
      '  script: ["true"]',
      "  rules: !reference [workflow, rules]",
      "default-branch-rule-probe:",
      "  stage: build",
      '  script: ["true"]',
      "  rules:",
      `    - if: ${JSON.stringify(rule0 ?? "$NO_SUCH_RULE")}`,
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(repo, "run.gitlab-ci.yml"),
    ["include:", "  - local: .gitlab-ci.yml", `${JOB}:`, "  services: []", ""].join("\n"),
  );
  // stand-in apk (the docker image is Alpine; here the tools are already installed)
  mkdirSync(join(repo, ".standin-bin"));
  writeFileSync(join(repo, ".standin-bin", "apk"), '#!/bin/sh\necho "apk stand-in: $*"\n', { mode: 0o755 });
  standIn = await makeStandIn(pinnedDaggerVersion());
}, 60_000);

afterAll(() => {
  if (repo) removeDir(repo);
  if (standIn) removeDir(standIn.dir);
});

describe(".gitlab-ci.yml with gitlab-ci-local", () => {
  it("validates against GitLab's schema, and the check can fail", async () => {
    const ok = await gcl(repo, ["--list-json"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/json schema validated/);

    writeFileSync(join(repo, "broken.gitlab-ci.yml"), readFileSync(join(ROOT, ".gitlab-ci.yml"), "utf8").replace(/^(\s+)timeout: .*$/m, "$1timeout: [2h]"));
    const bad = await gcl(repo, ["--file", "broken.gitlab-ci.yml", "--list-json"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/Invalid \.gitlab-ci\.yml configuration[\s\S]*timeout/);
  }, 60_000);

  it("defines exactly one job", () => {
    expect(jobNames).toHaveLength(1);
  });

  it("a push to main runs the one job", async () => {
    await checkout(repo, "main");
    expect(await jobsThatRun()).toEqual({ workflow: "on_success", jobs: [JOB] });
  }, 60_000);

  it("a push to feature/x runs the one job", async () => {
    await checkout(repo, "feature/x");
    try {
      expect(await jobsThatRun()).toEqual({ workflow: "on_success", jobs: [JOB] });
    } finally {
      await checkout(repo, "main");
    }
  }, 60_000);

  it("creates no pipeline for a merge request (as GitLab sets the variables, and even with a branch set)", async () => {
    const mr = ["--variable", "CI_PIPELINE_SOURCE=merge_request_event", "--variable", "CI_MERGE_REQUEST_IID=7", "--unset-variable", "CI_COMMIT_BRANCH"];
    expect(await jobsThatRun(mr)).toEqual({ workflow: "never", jobs: [] });
    const mrWithBranch = ["--variable", "CI_PIPELINE_SOURCE=merge_request_event", "--variable", "CI_COMMIT_BRANCH=feature/x"];
    expect((await jobsThatRun(mrWithBranch)).workflow).toBe("never");
  }, 60_000);

  it("creates no pipeline for a tag", async () => {
    const tag = ["--variable", "CI_COMMIT_TAG=v1.0.0", "--variable", "CI_COMMIT_REF_NAME=v1.0.0", "--unset-variable", "CI_COMMIT_BRANCH"];
    expect(await jobsThatRun(tag)).toEqual({ workflow: "never", jobs: [] });
    const tagWithBranch = ["--variable", "CI_COMMIT_TAG=v1.0.0", "--variable", "CI_COMMIT_BRANCH=main"];
    expect((await jobsThatRun(tagWithBranch)).workflow).toBe("never");
  }, 60_000);

  it("is not interruptible on the default branch and interruptible elsewhere", async () => {
    const job = (await listJobs(".gitlab-ci.yml")).find((j) => j.name === JOB)!;
    expect(job.rules?.[0]).toMatchObject({ interruptible: false });
    expect(job.rules?.[1]).toMatchObject({ interruptible: true });
    expect(job.rules).toHaveLength(2);
    // rule 0 (the non-interruptible one) matches exactly the default branch
    const rule0On = async (branch: string) =>
      (await listJobs("probe.gitlab-ci.yml", ["--variable", `CI_COMMIT_BRANCH=${branch}`])).find((j) => j.name === "default-branch-rule-probe")!.when;
    expect(await rule0On("main")).toBe("on_success");
    expect(await rule0On("feature/x")).toBe("never");
    expect(await rule0On("main-2")).toBe("never");
  }, 90_000);

  it("pins the docker image and dind service, TLS settings, resource_group, timeout, report artifact", () => {
    const job = ciYaml[JOB];
    expect(job.image).toMatch(/^docker:\d+\.\d+\.\d+$/);
    expect(job.services).toEqual([{ name: `${job.image}-dind`, alias: "docker" }]);
    expect(job.variables).toMatchObject({
      DOCKER_HOST: "tcp://docker:2376",
      DOCKER_TLS_CERTDIR: "/certs",
      DOCKER_TLS_VERIFY: "1",
      DOCKER_CERT_PATH: "$DOCKER_TLS_CERTDIR/client",
    });
    expect(job.resource_group).toMatch(/\$CI_COMMIT_REF_SLUG/);
    expect(job.timeout).toMatch(/^\d+h( \d+m)?$/);
    expect(job.artifacts).toMatchObject({ when: "always", paths: ["report/"] });
    expect(job.script).toEqual(["ci/dagger-ci.sh"]);
  });

  it("pins DAGGER_VERSION to the module's engine and SDK version", () => {
    const v = pinnedDaggerVersion();
    expect(v).toBe("0.21.8");
    expect(JSON.parse(readFileSync(join(ROOT, "dagger.json"), "utf8")).engineVersion).toBe(`v${v}`);
    expect(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).dependencies["@dagger.io/dagger"]).toBe(v);
    expect(ciYaml.variables.DAGGER_NO_NAG).toBe("1");
  });
});

describe("the job, run by gitlab-ci-local (shell executor, stand-in Dagger CLI)", () => {
  const canary = "canary-pw-7f3a9c1e55d0";
  // What GitLab puts in the job's id_token variable (gitlab-ci-local mints none): a canary.
  const tokenCanary = "eyJ.canary-id-token.5ab3";

  async function runJob(extra: string[], file = "run.gitlab-ci.yml") {
    const out = join(standIn.dir, `run-${Math.random().toString(36).slice(2)}`);
    mkdirSync(out);
    // nothing left over from an earlier run may satisfy the checks below
    removeDir(join(repo, "report"));
    removeDir(join(repo, ".gitlab-ci-local", "artifacts"));
    const args = [
      "--file",
      file,
      "--force-shell-executor",
      "--json-schema-validation=false",
      JOB,
      "--variable",
      `DAGGER_SHA256=${standIn.sha256}`,
      "--variable",
      `DAGGER_DOWNLOAD_URL=${standIn.url}`,
      "--variable",
      `DAGGER_BIN_DIR=${join(out, "bin")}`,
      "--variable",
      `STANDIN_ARGV=${join(out, "argv")}`,
      "--variable",
      `STANDIN_ENV=${join(out, "env")}`,
      "--variable",
      "CI_REGISTRY_USER=gitlab-ci-token",
      "--variable",
      `CI_REGISTRY_PASSWORD=${canary}`,
      "--variable",
      `SIGSTORE_ID_TOKEN=${tokenCanary}`,
      ...extra,
    ];
    const r = await gcl(repo, args, { PATH: `${join(repo, ".standin-bin")}:${process.env.PATH ?? ""}` });
    const argv = existsSync(join(out, "argv")) ? readFileSync(join(out, "argv"), "utf8").trimEnd().split("\n") : [];
    const envSeen = existsSync(join(out, "env"))
      ? Object.fromEntries(readFileSync(join(out, "env"), "utf8").trimEnd().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]))
      : {};
    const log = readFileSync(join(repo, ".gitlab-ci-local", "output", `${JOB}.log`), "utf8");
    const artifact = join(repo, ".gitlab-ci-local", "artifacts", JOB, "report", "report.md");
    return { r, argv, envSeen, log, artifactExists: existsSync(artifact) };
  }

  const flag = (argv: string[], name: string) => {
    const i = argv.indexOf(name);
    return i < 0 ? undefined : argv[i + 1];
  };

  it("on main: installs the verified CLI and makes the one `dagger call ci` with the job's values and seed defaults", async () => {
    await checkout(repo, "main");
    const { r, argv, envSeen, log, artifactExists } = await runJob([]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(log).toMatch(/sha256 ok/);
    const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: repo, encoding: "utf8" }).trim();
    expect(argv.slice(0, 2)).toEqual(["call", "ci"]);
    expect(argv.slice(-3)).toEqual(["export", "--path", "report"]);
    expect(flag(argv, "--branch")).toBe("main");
    expect(flag(argv, "--commit-sha")).toBe(head);
    expect(flag(argv, "--default-branch")).toBe("main");
    expect(flag(argv, "--pipeline-source")).toBe("push");
    expect(flag(argv, "--registry")).toMatch(/\/example-group\/slinky-containers$/);
    expect(flag(argv, "--username")).toBe("gitlab-ci-token");
    expect(flag(argv, "--password")).toBe("env:CI_REGISTRY_PASSWORD");
    expect(flag(argv, "--slurm-version")).toBe("25.11");
    expect(flag(argv, "--flavor")).toBe("ubuntu24.04");
    expect(flag(argv, "--group")).toBe("all");
    expect(flag(argv, "--platforms")).toBe("linux/amd64");
    // SIGNING=auto on gitlab.com: keyless, the job's id_token by name, the identity and issuer of this job
    expect(flag(argv, "--signing")).toBe("keyless");
    expect(flag(argv, "--oidc-token")).toBe("env:SIGSTORE_ID_TOKEN");
    expect(flag(argv, "--certificate-identity")).toMatch(/\/example-group\/slinky-containers\/\/\.gitlab-ci\.yml@refs\/heads\/main$/);
    expect(flag(argv, "--certificate-oidc-issuer")).toMatch(/^https?:\/\//);
    expect(flag(argv, "--pipeline-url")).toMatch(/^(https?:\/\/\S+)?$/);
    expect(flag(argv, "--job-url")).toMatch(/^(https?:\/\/\S+)?$/);
    expect(argv).not.toContain("--fulcio-url");
    expect(argv).not.toContain("--rekor-url");
    // the secrets reach the CLI through the environment only, never argv or the log
    expect(envSeen.PASSWORD_SHA256).toBe(sha256(canary));
    for (const secret of [canary, tokenCanary]) {
      expect(argv.join(" ")).not.toContain(secret);
      expect(log + r.stdout + r.stderr).not.toContain(secret);
    }
    expect(envSeen).toMatchObject({
      DAGGER_NO_NAG: "1",
      DOCKER_HOST: "tcp://docker:2376",
      DOCKER_TLS_VERIFY: "1",
      DOCKER_CERT_PATH: "/certs/client",
    });
    expect(artifactExists).toBe(true);
  }, 90_000);

  it("on feature/x with SLURM_VERSION, LINUX_FLAVOR, BUILD_GROUP, BUILD_CACHE, PLATFORMS overridden: the overrides reach the call", async () => {
    await checkout(repo, "feature/x");
    try {
      const { r, argv } = await runJob([
        "--variable",
        "SLURM_VERSION=24.11",
        "--variable",
        "LINUX_FLAVOR=debian13",
        "--variable",
        "BUILD_GROUP=core",
        "--variable",
        "BUILD_CACHE=off",
        "--variable",
        "PLATFORMS=linux/amd64,linux/arm64",
      ]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(flag(argv, "--branch")).toBe("feature/x");
      expect(flag(argv, "--default-branch")).toBe("main");
      expect(flag(argv, "--slurm-version")).toBe("24.11");
      expect(flag(argv, "--flavor")).toBe("debian13");
      expect(flag(argv, "--group")).toBe("core");
      expect(flag(argv, "--build-cache")).toBe("off");
      expect(flag(argv, "--platforms")).toBe("linux/amd64,linux/arm64");
      expect(flag(argv, "--cache-max-age-days")).toBe("7");
    } finally {
      await checkout(repo, "main");
    }
  }, 90_000);

  it("key-based signing: the File variable's path and the password by name; the Rekor URL given reaches the call", async () => {
    const keyFile = join(standIn.dir, "cosign.key");
    writeFileSync(keyFile, "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\ncanary-key-body-88f1\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n");
    const { r, argv, log } = await runJob([
      "--variable",
      "SIGNING=key",
      "--variable",
      `COSIGN_PRIVATE_KEY=${keyFile}`,
      "--variable",
      "COSIGN_PASSWORD=canary-key-password-0b7e",
      "--variable",
      "SIGNING_REKOR_URL=https://rekor.site.example",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(flag(argv, "--signing")).toBe("key");
    expect(flag(argv, "--signing-key")).toBe(`file:${keyFile}`);
    expect(flag(argv, "--signing-password")).toBe("env:COSIGN_PASSWORD");
    expect(flag(argv, "--rekor-url")).toBe("https://rekor.site.example");
    expect(argv).not.toContain("--oidc-token");
    for (const secret of ["canary-key-body-88f1", "canary-key-password-0b7e"]) {
      expect(argv.join(" ") + log + r.stdout + r.stderr).not.toContain(secret);
    }
  }, 90_000);

  it("SIGNING=auto: key when a key is set, keyless on gitlab.com, and on a self-managed GitLab without either a stop before any call", async () => {
    const selfManaged = await runJob(["--variable", "CI_SERVER_HOST=gitlab.hpc.example", "--variable", "CI_SERVER_URL=https://gitlab.hpc.example"]);
    expect(selfManaged.r.code).not.toBe(0);
    expect(selfManaged.log).toMatch(/SIGNING=auto: no signing key is set and this GitLab \(gitlab\.hpc\.example\)/);
    expect(selfManaged.log).toMatch(/valid values of SIGNING: auto, keyless, key, off/);
    expect(selfManaged.argv).toEqual([]);
    const ownFulcio = await runJob([
      "--variable", "CI_SERVER_HOST=gitlab.hpc.example",
      "--variable", "SIGNING_FULCIO_URL=https://fulcio.hpc.example",
    ]);
    expect(ownFulcio.r.code, ownFulcio.r.stdout + ownFulcio.r.stderr).toBe(0);
    expect(flag(ownFulcio.argv, "--signing")).toBe("keyless");
    expect(flag(ownFulcio.argv, "--fulcio-url")).toBe("https://fulcio.hpc.example");
    const keyFile = join(standIn.dir, "auto-cosign.key");
    writeFileSync(keyFile, "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\ncanary-auto-key-5c2e\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n");
    const withKey = await runJob([
      "--variable", "CI_SERVER_HOST=gitlab.hpc.example",
      "--variable", `COSIGN_PRIVATE_KEY=${keyFile}`,
      "--variable", "COSIGN_PASSWORD=canary-auto-password-77d1",
    ]);
    expect(withKey.r.code, withKey.r.stdout + withKey.r.stderr).toBe(0);
    expect(flag(withKey.argv, "--signing")).toBe("key");
    expect(flag(withKey.argv, "--signing-key")).toBe(`file:${keyFile}`);
    expect(withKey.argv.join(" ") + withKey.log).not.toMatch(/canary-auto-(key|password)/);
  }, 240_000);

  it("stops before any call when signing lacks what it needs, naming it", async () => {
    const keyless = await runJob(["--variable", "SIGNING=keyless", "--variable", "SIGSTORE_ID_TOKEN="]);
    expect(keyless.r.code).not.toBe(0);
    expect(keyless.log).toMatch(/SIGNING=keyless needs the job's OIDC token SIGSTORE_ID_TOKEN/);
    expect(keyless.argv).toEqual([]);
    const key = await runJob(["--variable", "SIGNING=key"]);
    expect(key.log).toMatch(/SIGNING=key needs COSIGN_PRIVATE_KEY: a CI\/CD variable of type File/);
    expect(key.argv).toEqual([]);
    const off = await runJob(["--variable", "SIGNING=off"]);
    expect(off.r.code, off.r.stdout + off.r.stderr).toBe(0);
    expect(flag(off.argv, "--signing")).toBe("off");
  }, 180_000);

  it("keeps the report artifact when the Dagger call fails (artifacts when: always)", async () => {
    const { r, argv, artifactExists } = await runJob(["--variable", "STANDIN_EXIT=3"]);
    expect(argv[0]).toBe("call");
    expect(r.code).not.toBe(0);
    expect(artifactExists).toBe(true);
  }, 90_000);

  it("fails the job, keeping the report, when the call returns a report whose status is failed", async () => {
    const { r, argv, log, artifactExists } = await runJob(["--variable", "STANDIN_STATUS=failed"]);
    expect(argv[0]).toBe("call");
    expect(r.code).not.toBe(0);
    expect(log).toMatch(/the run did not pass \(report\/status: failed\)/);
    expect(artifactExists).toBe(true);
  }, 90_000);

  it("fails the job before any call when the CLI checksum is wrong", async () => {
    const { r, argv, log } = await runJob(["--variable", `DAGGER_SHA256=${"0".repeat(64)}`]);
    expect(r.code).not.toBe(0);
    expect(log).toMatch(/sha256 mismatch/);
    expect(argv).toEqual([]);
  }, 90_000);

  it("Kubernetes variant (ci/kubernetes.gitlab-ci.yml): same one call, engine from the runner host, no dind", async () => {
    const { r, argv, envSeen } = await runJob([], "ci/kubernetes.gitlab-ci.yml");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(argv.slice(0, 2)).toEqual(["call", "ci"]);
    expect(flag(argv, "--password")).toBe("env:CI_REGISTRY_PASSWORD");
    expect(flag(argv, "--slurm-version")).toBe("25.11");
    expect(envSeen._EXPERIMENTAL_DAGGER_RUNNER_HOST).toMatch(/^(unix|tcp|kube-pod):\/\//);
    expect(envSeen.DOCKER_HOST).toBe("");
  }, 90_000);
});

describe("Kubernetes variant with gitlab-ci-local", () => {
  it("validates, keeps exactly the one job with its rules, and drops the dind service", async () => {
    const listed = await listJobs("ci/kubernetes.gitlab-ci.yml", [], true);
    expect(listed.map((j) => j.name)).toEqual([JOB]);
    expect(listed[0]?.rules).toEqual((await listJobs(".gitlab-ci.yml"))[0]?.rules);
    const preview = await gcl(repo, ["--file", "ci/kubernetes.gitlab-ci.yml", "--preview"]);
    expect(preview.code, preview.stderr).toBe(0);
    const expanded = parse(preview.stdout) as Record<string, any>;
    const job = expanded[JOB];
    expect(job.services ?? []).toEqual([]);
    expect(job.variables._EXPERIMENTAL_DAGGER_RUNNER_HOST).toBeTruthy();
    expect(job.script).toEqual(["ci/dagger-ci.sh"]);
    expect(job.resource_group).toBe(ciYaml[JOB].resource_group);
    expect(job.timeout).toBe(ciYaml[JOB].timeout);
    expect(job.artifacts).toEqual(ciYaml[JOB].artifacts);
    expect(expanded.workflow).toEqual(ciYaml.workflow);
    expect(expanded.variables.DAGGER_VERSION).toBe(pinnedDaggerVersion());
  }, 60_000);
});
