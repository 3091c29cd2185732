/**
 * The module as users reach it: `dagger call` from the repository root, in
 * module mode. The engine uploads the module source dagger.json includes, its
 * TypeScript runtime installs the production dependencies, generates sdk/,
 * introspects src/ and calls the function; the CLI renders the results. Same
 * engine, inputs and registries as the client-mode tests (fixture.ts).
 *
 * Module mode needs the engine's builtin SDK images; an engine built from
 * source lacks them, so these tests run only where SLINKY_DAGGER_SDK gives
 * them (dagger.ts), and are skipped under a name that says so otherwise.
 */
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGES } from "../../src/core/catalog.js";
import type { Report } from "../../src/release/report.js";
import { REPO, run, SLURM_SOURCE } from "../images/harness.js";
import { cliName, scanModule, type ScannedObject } from "../support/dagger.js";
import { clientEnv, DAGGER_BIN, DAGGER_DIR, moduleModeUnavailable, startDaggerEngine, stopDaggerEngine } from "./dagger.js";
import { engineOptions, type Fixture, FLAVOR, LINE, MINUTE, seconds, setUp, tagsOf, USER } from "./fixture.js";

const unavailable = moduleModeUnavailable();
const COMMIT = "7a1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c";
const COMMIT_2 = "3e6f708192a3b4c5d6e7f8091a2b3c9f1c2b3a4d";

const report: Record<string, unknown> = {};
let fixture: Fixture;
let scanned: ScannedObject;

/** One `dagger call` (or other CLI command) from the repository root; stdout, and stderr on failure. */
async function dagger(args: string[], timeoutMs = 30 * MINUTE): Promise<{ stdout: string; seconds: number }> {
  const env = {
    ...process.env,
    ...clientEnv(),
    SLINKY_TEST_REGISTRY_PASSWORD: fixture.canary,
    SLINKY_TEST_COSIGN_PASSWORD: fixture.keyCanary,
  };
  const [r, took] = await seconds(() => run(join(DAGGER_BIN, "dagger"), ["--progress", "plain", ...args], { timeoutMs, env, cwd: REPO }));
  expect(r.code, `dagger ${args.join(" ")}:\n${r.stderr.slice(-6000)}`).toBe(0);
  for (const canary of [fixture.canary, fixture.keyCanary]) expect(r.stdout + r.stderr).not.toContain(canary);
  return { stdout: r.stdout, seconds: took };
}

/** `dagger call --manifest <site> FUNCTION ARGS…` */
const call = (fn: string, args: string[], timeoutMs?: number) => dagger(["call", "--manifest", fixture.siteManifest, fn, ...args], timeoutMs);
const selection = ["--slurm-version", LINE, "--flavor", FLAVOR];

describe.skipIf(unavailable !== undefined)(`dagger call in module mode${unavailable ? ` (not run here: ${unavailable})` : ""}`, () => {
  beforeAll(async () => {
    fixture = await setUp();
    scanned = (await scanModule()).objects.SlinkyContainers!;
  }, 30 * MINUTE);

  afterAll(async () => {
    mkdirSync(join(REPO, "out"), { recursive: true });
    writeFileSync(join(REPO, "out", "module-report.json"), `${JSON.stringify(report, null, 2)}\n`);
    console.log(`[module mode] ${JSON.stringify(report)}`);
    await fixture?.stop();
  }, 5 * MINUTE);

  it("dagger functions: the module loads (upload, npm install, sdk/, introspection) and lists every function with its first line", async () => {
    const first = await dagger(["functions"]);
    const warm = await dagger(["functions"]);
    report.functions = { firstSeconds: first.seconds, warmSeconds: warm.seconds };
    for (const fn of Object.values(scanned.methods)) {
      expect(first.stdout).toMatch(new RegExp(`^${cliName(fn.name)}\\s+${fn.description.split("\n")[0]!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`, "m"));
    }
  }, 30 * MINUTE);

  it("dagger call build-all --help: every argument, as the scanner reads it", async () => {
    const help = await dagger(["call", "build-all", "--help"]);
    report.helpSeconds = help.seconds;
    for (const arg of Object.values(scanned.methods.buildAll!.arguments)) expect(help.stdout).toContain(`--${cliName(arg.name)}`);
  });

  it("dagger call plan: the site manifest File read in module mode", async () => {
    const plan = await call("plan", [...selection, "--branch", "main", "--sha", COMMIT, "--registry", `${fixture.target}/slinky`]);
    report.planSeconds = plan.seconds;
    const document = JSON.parse(plan.stdout) as { slurm: { version: string }; images: { name: string; references: string[] }[] };
    expect(document.slurm.version).toBe(SLURM_SOURCE.version);
    expect(document.images.map((i) => i.name).sort()).toEqual(IMAGES.map((i) => i.name).sort());
    expect(document.images[0]!.references).toContain(`${fixture.target}/slinky/${document.images[0]!.name}:${LINE}-${FLAVOR}-main-${COMMIT.slice(0, 8)}`);
  });

  it("dagger call build --image slurmd export --path: the recipe from the context's dockerfiles/ (defaultPath), exported", async () => {
    const tarball = join(fixture.work, "slurmd-module.tar");
    const built = await call("build", ["--image", "slurmd", ...selection, "export", "--path", tarball]);
    report.buildSlurmdSeconds = built.seconds;
    expect(statSync(tarball).size).toBeGreaterThan(50_000_000);
  }, 60 * MINUTE);

  it("dagger call build-all: the 8 images", async () => {
    const all = await call("build-all", selection, 60 * MINUTE);
    report.buildAllSeconds = all.seconds;
    for (const image of IMAGES) expect(all.stdout).toMatch(new RegExp(`^${image.name}: built in [0-9.]+s$`, "m"));
  }, 60 * MINUTE);

  it("dagger call test: every image's smoke checks", async () => {
    const tested = await call("test", selection);
    report.testSeconds = tested.seconds;
    for (const image of IMAGES) expect(tested.stdout).toMatch(new RegExp(`^${image.name}: smoke checks passed in`, "m"));
  }, 30 * MINUTE);

  /** `dagger call ci … export --path` as the GitLab job runs it, with key-based signing; its report. */
  async function ci(commit: string): Promise<{ report: Report; seconds: number }> {
    const out = join(fixture.work, `module-ci-${commit.slice(0, 8)}`);
    const r = await call(
      "ci",
      [
        "--branch", "main", "--commit-sha", commit, "--default-branch", "main", "--pipeline-source", "push",
        "--registry", `${fixture.target}/slinky`, "--username", USER, "--password", "env:SLINKY_TEST_REGISTRY_PASSWORD",
        ...selection, "--commit-timestamp", "2026-12-07T12:00:00Z",
        "--signing", "key", "--signing-key", `file:${join(fixture.work, "cosign.key")}`, "--signing-password", "env:SLINKY_TEST_COSIGN_PASSWORD",
        "export", "--path", out,
      ],
      60 * MINUTE,
    );
    expect(readdirSync(out).sort()).toEqual(["cosign.pub", "report.json", "report.md", "status"]);
    expect(readFileSync(join(out, "status"), "utf8").trim()).toBe("passed");
    return { report: JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report, seconds: r.seconds };
  }

  it("dagger call ci on the default branch: pushed over HTTPS with basic auth, cache written, signed, promoted", async () => {
    const { report: result, seconds: took } = await ci(COMMIT);
    report.ciSeconds = took;
    expect(result.ok, JSON.stringify(result.errors)).toBe(true);
    expect(result.signing?.ok).toBe(true);
    expect(result.cache?.packages?.written).toBeTruthy();
    for (const image of result.images) {
      expect(image.pushed && image.promoted, image.image).toBe(true);
      expect(await tagsOf(fixture, image.image)).toContain(`${LINE}-${FLAVOR}-latest`);
    }
    report.slurmdDigest = result.images.find((i) => i.image === "slurmd")!.digest;
  }, 60 * MINUTE);

  it("the same ci on an EMPTY engine state, the registry kept: everything reused from the registry cache", async () => {
    await stopDaggerEngine();
    const [, start] = await seconds(() => startDaggerEngine({ ...engineOptions, fresh: true }));
    const { report: result, seconds: took } = await ci(COMMIT_2);
    report.ciFreshEngine = { engineStartSeconds: start, seconds: took };
    expect(result.ok, JSON.stringify(result.errors)).toBe(true);
    expect(result.cache?.packages?.hit).toBe(true);
    expect((result.cache?.images ?? []).filter((i) => i.reused).length).toBe(IMAGES.length);
    expect(readFileSync(join(DAGGER_DIR, "engine.log"), "utf8")).not.toMatch(/build-slurm\.sh/);
  }, 60 * MINUTE);

  it("dagger call verify: the production image's signature, SBOM and provenance with the public key", async () => {
    const reference = `${fixture.target}/slinky/slurmd@${report.slurmdDigest as string}`;
    const verified = await call("verify", ["--reference", reference, "--public-key", join(fixture.work, "cosign.pub"), "--username", USER, "--password", "env:SLINKY_TEST_REGISTRY_PASSWORD"]);
    report.verifySeconds = verified.seconds;
    expect(verified.stdout).toMatch(/verified/i);
  }, 30 * MINUTE);
});
