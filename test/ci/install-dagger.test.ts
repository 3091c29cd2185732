// ci/install-dagger.sh and ci/dagger-ci.sh run for real with bash, curl (file:// URL),
// sha256sum and tar; the only stand-in is the Dagger CLI tarball itself (helpers.ts).
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, daggerArch, makeStandIn, pinnedDaggerVersion, removeDir, ROOT, run, type StandIn } from "./helpers.js";

const INSTALL = join(ROOT, "ci", "install-dagger.sh");
const DAGGER_CI = join(ROOT, "ci", "dagger-ci.sh");
const version = pinnedDaggerVersion();

let standIn: StandIn;
let work: string;
let noPins: string;

beforeAll(async () => {
  standIn = await makeStandIn(version);
  work = mkdtempSync(join(tmpdir(), "install-dagger-"));
  noPins = join(work, "no-pins.txt");
  writeFileSync(noPins, "# no pinned checksums\n");
});

afterAll(() => {
  if (standIn) removeDir(standIn.dir);
  if (work) removeDir(work);
});

function install(env: Record<string, string>) {
  const binDir = mkdtempSync(join(work, "bin-"));
  return run("bash", [INSTALL], {
    env: cleanEnv({
      DAGGER_VERSION: version,
      DAGGER_BIN_DIR: binDir,
      DAGGER_DOWNLOAD_URL: standIn.url,
      DAGGER_CHECKSUMS_FILE: noPins,
      ...env,
    }),
  }).then((r) => ({ ...r, binDir, installed: existsSync(join(binDir, "dagger")) }));
}

describe("ci/install-dagger.sh", () => {
  it("installs the CLI when the sha256 matches, executable, reporting the pinned version", async () => {
    const r = await install({ DAGGER_SHA256: standIn.sha256 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.installed).toBe(true);
    expect(statSync(join(r.binDir, "dagger")).mode & 0o777).toBe(0o755);
    expect(r.stdout).toContain(`sha256 ok for dagger_v${version}_linux_${daggerArch()}.tar.gz`);
    const v = await run(join(r.binDir, "dagger"), ["version"]);
    expect(v.stdout).toContain(`v${version}`);
  });

  it("accepts an upper-case checksum", async () => {
    const r = await install({ DAGGER_SHA256: standIn.sha256.toUpperCase() });
    expect(r.code, r.stderr).toBe(0);
  });

  it("refuses a wrong sha256 and installs nothing", async () => {
    const wrong = standIn.sha256.replace(/^./, (c) => (c === "0" ? "1" : "0"));
    const r = await install({ DAGGER_SHA256: wrong });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/sha256 mismatch for dagger_v[\d.]+_linux_\w+\.tar\.gz: expected .*got [0-9a-f]{64}\. Refusing to install/);
    expect(r.installed).toBe(false);
  });

  it("refuses when no checksum is known, naming DAGGER_SHA256, before downloading anything", async () => {
    const r = await install({ DAGGER_DOWNLOAD_URL: `file://${join(work, "does-not-exist.tar.gz")}` });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no sha256 known for .*DAGGER_SHA256.*Refusing to install an unverified Dagger CLI/);
    expect(r.stdout).not.toMatch(/downloading/);
    expect(r.installed).toBe(false);
  });

  it("treats an empty DAGGER_SHA256 as missing", async () => {
    const r = await install({ DAGGER_SHA256: "" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/DAGGER_SHA256/);
    expect(r.installed).toBe(false);
  });

  it("refuses a malformed checksum", async () => {
    const r = await install({ DAGGER_SHA256: "abc123" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not 64 hex characters/);
    expect(r.installed).toBe(false);
  });

  it("uses the pinned checksums list when DAGGER_SHA256 is unset", async () => {
    const pins = join(work, "pins.txt");
    writeFileSync(pins, `# pins\n${"f".repeat(64)}  dagger_v${version}_linux_other.tar.gz\n${standIn.sha256}  dagger_v${version}_linux_${daggerArch()}.tar.gz\n`);
    const r = await install({ DAGGER_CHECKSUMS_FILE: pins });
    expect(r.code, r.stderr).toBe(0);
    expect(r.installed).toBe(true);
    const bad = join(work, "bad-pins.txt");
    writeFileSync(bad, `${"0".repeat(64)}  dagger_v${version}_linux_${daggerArch()}.tar.gz\n`);
    const r2 = await install({ DAGGER_CHECKSUMS_FILE: bad });
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/sha256 mismatch/);
  });

  it("refuses a tarball whose CLI reports another version", async () => {
    const other = await makeStandIn(version, "0.0.1");
    try {
      const r = await install({ DAGGER_SHA256: other.sha256, DAGGER_DOWNLOAD_URL: other.url });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`expected v${version.replace(/\./g, "\\.")}`));
    } finally {
      removeDir(other.dir);
    }
  });

  it("refuses without DAGGER_VERSION", async () => {
    const r = await run("bash", [INSTALL], { env: cleanEnv({ DAGGER_SHA256: standIn.sha256 }) });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/DAGGER_VERSION is not set/);
  });

  it("defaults to Dagger's official release URL for the runner's architecture", () => {
    const text = readFileSync(INSTALL, "utf8");
    expect(text).toContain('https://dl.dagger.io/dagger/releases/${version}/${file}');
    expect(text).toContain('file="dagger_v${version}_${os}_${arch}.tar.gz"');
  });

  it("ships a well-formed pinned checksums list (only lines for the pinned version)", () => {
    const lines = readFileSync(join(ROOT, "ci", "dagger-checksums.txt"), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"));
    for (const l of lines) {
      expect(l).toMatch(new RegExp(`^[0-9a-f]{64}  dagger_v${version.replace(/\./g, "\\.")}_linux_(amd64|arm64)\\.tar\\.gz$`));
    }
  });
});

describe("ci/dagger-ci.sh", () => {
  const jobEnv = {
    CI_COMMIT_BRANCH: "main",
    CI_COMMIT_SHA: "0123456789abcdef0123456789abcdef01234567",
    CI_DEFAULT_BRANCH: "main",
    CI_PIPELINE_SOURCE: "push",
    CI_REGISTRY_IMAGE: "registry.example.invalid/group/slinky-containers",
    CI_REGISTRY_USER: "gitlab-ci-token",
    CI_REGISTRY_PASSWORD: "canary-pw-0b1c",
  };

  for (const missing of ["CI_COMMIT_BRANCH", "CI_REGISTRY_PASSWORD", "CI_REGISTRY_IMAGE"]) {
    it(`refuses without ${missing} (tag/merge-request pipelines), before installing anything`, async () => {
      const binDir = mkdtempSync(join(work, "bin-"));
      const env: Record<string, string> = {
        ...jobEnv,
        DAGGER_VERSION: version,
        DAGGER_SHA256: standIn.sha256,
        DAGGER_DOWNLOAD_URL: standIn.url,
        DAGGER_BIN_DIR: binDir,
      };
      delete env[missing];
      const r = await run("bash", [DAGGER_CI], { env: cleanEnv(env), cwd: work });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`${missing} is not set`);
      expect(readdirSync(binDir)).toEqual([]);
      expect(r.stdout + r.stderr).not.toContain(jobEnv.CI_REGISTRY_PASSWORD);
    });
  }
});

describe("shell scripts", () => {
  it("every ci/*.sh passes shellcheck", async () => {
    const scripts = readdirSync(join(ROOT, "ci"))
      .filter((f) => f.endsWith(".sh"))
      .map((f) => join(ROOT, "ci", f));
    expect(scripts.length).toBeGreaterThanOrEqual(2);
    const r = await run("shellcheck", ["--severity=style", ...scripts]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});
