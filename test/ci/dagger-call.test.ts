// The one `dagger call ci ...` in ci/dagger-ci.sh against the module's real surface, read by
// the SDK's own module scanner (no engine): every flag the job passes must be an argument of
// `ci`, every argument without a default must be passed, the password must be a Secret,
// and `ci` must return a Directory (the job exports it with `export --path report`).
// (The scanner's JSON drops `cache`, so `cache: "never"` is not checked here.)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { cliName, scanModule, type ScannedFunction } from "../support/dagger.js";
import { ROOT } from "./helpers.js";


/** Flags between `call ci` and `export` in ci/dagger-ci.sh. */
function jobFlags(): Map<string, string> {
  const text = readFileSync(join(ROOT, "ci", "dagger-ci.sh"), "utf8").replace(/\\\n\s*/g, " ");
  const m = /"\$dagger_bin" call ci (.*?) export --path report\s*$/m.exec(text);
  if (!m?.[1]) throw new Error("no `dagger call ci ... export --path report` line in ci/dagger-ci.sh");
  const flags = new Map<string, string>();
  for (const f of m[1].matchAll(/--([a-z][a-z-]*) (\S+)/g)) flags.set(f[1] ?? "", f[2] ?? "");
  return flags;
}

let ci: ScannedFunction | undefined;

beforeAll(async () => {
  const scanned = await scanModule();
  ci = scanned.objects.SlinkyContainers?.methods.ci;
}, 120_000);

/** The signing flags ci/dagger-ci.sh adds (sign_args), with their values. */
function signingFlags(): Map<string, string> {
  const text = readFileSync(join(ROOT, "ci", "dagger-ci.sh"), "utf8");
  const flags = new Map<string, string>();
  for (const m of text.matchAll(/sign_args\+?=\(([^)]*)\)/g)) {
    for (const f of (m[1] ?? "").replace(/\n\s*/g, " ").matchAll(/--([a-z][a-z-]*) (\S+)/g)) flags.set(f[1] ?? "", f[2] ?? "");
  }
  return flags;
}

describe("the job's dagger call matches the module's `ci` function", () => {
  it("adds signing flags that are ci's arguments, its secrets only by name (env:) or path (file:)", () => {
    const flags = signingFlags();
    expect([...flags.keys()].sort()).toEqual(
      ["signing", "oidc-token", "certificate-identity", "certificate-oidc-issuer", "signing-key", "signing-password", "fulcio-url", "rekor-url"].sort(),
    );
    const byFlag = new Map(Object.values(ci?.arguments ?? {}).map((a) => [cliName(a.name), a]));
    for (const flag of flags.keys()) expect(byFlag.has(flag), `--${flag} is not an argument of ci`).toBe(true);
    expect(flags.get("oidc-token")).toBe("env:SIGSTORE_ID_TOKEN");
    expect(flags.get("signing-password")).toBe("env:COSIGN_PASSWORD");
    expect(flags.get("signing-key")).toBe('"file:${COSIGN_PRIVATE_KEY}"');
    for (const secret of ["oidc-token", "signing-key", "signing-password"]) expect(byFlag.get(secret)?.type).toMatchObject({ kind: "OBJECT_KIND", name: "Secret" });
  });

  it("passes exactly the expected flags, the password only as env:", () => {
    const flags = jobFlags();
    expect([...flags.keys()].sort()).toEqual(
      ["branch", "commit-sha", "default-branch", "pipeline-source", "registry", "username", "password", "slurm-version", "flavor", "group", "commit-timestamp", "build-cache", "cache-max-age-days", "platforms", "pipeline-url", "job-url"].sort(),
    );
    expect(flags.get("pipeline-url")).toBe('"${CI_PIPELINE_URL:-}"');
    expect(flags.get("job-url")).toBe('"${CI_JOB_URL:-}"');
    expect(flags.get("password")).toBe("env:CI_REGISTRY_PASSWORD");
    expect(flags.get("commit-timestamp")).toBe('"${CI_COMMIT_TIMESTAMP:-}"');
    expect(flags.get("build-cache")).toBe('"${BUILD_CACHE:-on}"');
  });

  it("`ci` exists and returns a Directory", () => {
    expect(ci, "SlinkyContainers.ci not found by the module scanner").toBeDefined();
    expect(ci?.returnType).toMatchObject({ kind: "OBJECT_KIND", name: "Directory" });
  });

  it("every flag is an argument of `ci`; every argument without a default is passed", () => {
    expect(ci, "SlinkyContainers.ci not found by the module scanner").toBeDefined();
    const args = Object.values(ci?.arguments ?? {});
    expect(args.length).toBeGreaterThan(0);
    const byFlag = new Map(args.map((a) => [cliName(a.name), a]));
    const flags = jobFlags();
    for (const flag of flags.keys()) expect(byFlag.has(flag), `--${flag} is not an argument of ci`).toBe(true);
    for (const [flag, a] of byFlag) {
      const hasDefault = a.isOptional || a.defaultValue !== undefined || a.defaultPath !== undefined;
      if (!hasDefault) expect(flags.has(flag), `ci needs --${flag}, the job does not pass it`).toBe(true);
    }
    expect(byFlag.get("password")?.type).toMatchObject({ kind: "OBJECT_KIND", name: "Secret" });
  });
});
