// ci/install-dagger.sh and ci/dagger-ci.sh run for real with bash, curl (file:// URL),
// sha256sum and tar; the only stand-in is the Dagger CLI tarball itself (helpers.ts).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
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

  it("refuses when no pin exists and no checksums.txt can be fetched, naming DAGGER_SHA256, before downloading the CLI", async () => {
    const r = await install({
      DAGGER_DOWNLOAD_URL: `file://${join(work, "does-not-exist.tar.gz")}`,
      DAGGER_CHECKSUMS_URL: `file://${join(work, "no-checksums.txt")}`,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no sha256 pinned for .*checksums\.txt could not be fetched.*DAGGER_SHA256.*Refusing to install an unverified Dagger CLI/);
    expect(r.stdout).not.toMatch(/downloading/);
    expect(r.installed).toBe(false);
  });

  it("treats an empty DAGGER_SHA256 as missing", async () => {
    const r = await install({ DAGGER_SHA256: "", DAGGER_CHECKSUMS_URL: `file://${join(work, "no-checksums.txt")}` });
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

  it("defaults to Dagger's official release location (its layout <base>/<version>/<file> is exercised on loopback below)", () => {
    const text = readFileSync(INSTALL, "utf8");
    expect(text).toContain('releases="${DAGGER_RELEASES_URL:-https://dl.dagger.io/dagger/releases}"');
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

/**
 * A STAND-IN Dagger release directory (<root>/<version>/<tarball> and
 * checksums.txt, as on dl.dagger.io) served over HTTP on 127.0.0.1; every
 * request path is recorded.
 */
interface ReleaseServer {
  root: string;
  base: string;
  requests: string[];
  close: () => Promise<void>;
}

async function serveRelease(root: string): Promise<ReleaseServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://127.0.0.1").pathname);
    requests.push(path);
    const file = join(root, normalize(path).replace(/^(\.\.[/\\])+/, ""));
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end("not found\n");
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream" }).end(readFileSync(file));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    root,
    base: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}

describe("ci/install-dagger.sh without a pin: the release's published checksums.txt (STAND-IN release on loopback)", () => {
  let release: ReleaseServer;
  const file = () => `dagger_v${version}_linux_${daggerArch()}.tar.gz`;
  const dirOf = (name: string) => join(release.root, name, version);

  beforeAll(async () => {
    release = await serveRelease(mkdtempSync(join(tmpdir(), "dagger-releases-")));
    const tarball = readFileSync(standIn.tarball);
    const listing = (sha: string) =>
      `${"a".repeat(64)}  dagger_v${version}_darwin_arm64.tar.gz\n${sha}  ${file()}\n${"b".repeat(64)}  dagger_v${version}_windows_amd64.zip\n`;
    // good: the tarball and its listed sha256
    mkdirSync(dirOf("good"), { recursive: true });
    writeFileSync(join(dirOf("good"), file()), tarball);
    writeFileSync(join(dirOf("good"), "checksums.txt"), listing(standIn.sha256));
    // tampered: the tarball was changed after checksums.txt was published
    mkdirSync(dirOf("tampered"), { recursive: true });
    writeFileSync(join(dirOf("tampered"), file()), Buffer.concat([tarball, Buffer.from("tampered")]));
    writeFileSync(join(dirOf("tampered"), "checksums.txt"), listing(standIn.sha256));
    // missing: no checksums.txt at all
    mkdirSync(dirOf("missing"), { recursive: true });
    writeFileSync(join(dirOf("missing"), file()), tarball);
    // unlisted: a checksums.txt without a line for this platform's tarball
    mkdirSync(dirOf("unlisted"), { recursive: true });
    writeFileSync(join(dirOf("unlisted"), file()), tarball);
    writeFileSync(join(dirOf("unlisted"), "checksums.txt"), `${"a".repeat(64)}  dagger_v${version}_darwin_arm64.tar.gz\n`);
  });

  afterAll(async () => {
    if (release) {
      await release.close();
      removeDir(release.root);
    }
  });

  const installFrom = (name: string, env: Record<string, string> = {}) => {
    release.requests.length = 0;
    const binDir = mkdtempSync(join(work, "bin-"));
    return run("bash", [INSTALL], {
      env: cleanEnv({
        DAGGER_VERSION: version,
        DAGGER_BIN_DIR: binDir,
        DAGGER_RELEASES_URL: `${release.base}/${name}`,
        DAGGER_CHECKSUMS_FILE: noPins,
        ...env,
      }),
    }).then((r) => ({ ...r, binDir, installed: existsSync(join(binDir, "dagger")), requests: [...release.requests] }));
  };

  it("good: verifies the tarball against checksums.txt, installs, and prints the sha256 it trusted with the line to pin", async () => {
    const r = await installFrom("good");
    expect(r.code, r.stderr).toBe(0);
    expect(r.installed).toBe(true);
    expect(r.requests).toEqual([`/good/${version}/checksums.txt`, `/good/${version}/${file()}`]);
    expect(r.stdout).toContain(`trusted sha256 ${standIn.sha256} for ${file()}`);
    expect(r.stdout).toContain(`DAGGER_SHA256=${standIn.sha256}`);
    expect(r.stdout.split("\n")).toContain(`${standIn.sha256}  ${file()}`);
    const v = await run(join(r.binDir, "dagger"), ["version"]);
    expect(v.stdout).toContain(`v${version}`);
  });

  it("tampered: refuses a tarball whose sha256 is not the one checksums.txt lists, installs nothing", async () => {
    const r = await installFrom("tampered");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`sha256 mismatch for ${file().replace(/\./g, "\\.")}: expected ${standIn.sha256} \\(from http://127\\.0\\.0\\.1:\\d+/tampered/${version.replace(/\./g, "\\.")}/checksums\\.txt\\), got [0-9a-f]{64}\\. Refusing to install`));
    expect(r.stdout).not.toContain("trusted sha256");
    expect(r.installed).toBe(false);
  });

  it("missing: refuses when the release has no checksums.txt, without downloading the CLI", async () => {
    const r = await installFrom("missing");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/checksums\.txt could not be fetched .*DAGGER_SHA256.*Refusing to install an unverified Dagger CLI/);
    expect(r.requests).toEqual([`/missing/${version}/checksums.txt`]);
    expect(r.installed).toBe(false);
  });

  it("unlisted: refuses when checksums.txt has no line for this platform's tarball", async () => {
    const r = await installFrom("unlisted");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`checksums\\.txt lists no line for ${file().replace(/\./g, "\\.")}.*Refusing to install`));
    expect(r.requests).toEqual([`/unlisted/${version}/checksums.txt`]);
    expect(r.installed).toBe(false);
  });

  it("prefers a pin: with DAGGER_SHA256 set, checksums.txt is not fetched (and a wrong pin still refuses)", async () => {
    const r = await installFrom("good", { DAGGER_SHA256: standIn.sha256 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.requests).toEqual([`/good/${version}/${file()}`]);
    expect(r.stdout).not.toContain("trusted sha256");
    const wrong = await installFrom("good", { DAGGER_SHA256: "0".repeat(64) });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/sha256 mismatch .*\(from DAGGER_SHA256\)/);
    expect(wrong.requests).toEqual([`/good/${version}/${file()}`]);
  });

  it("prefers a pin: a line in the pinned list wins over checksums.txt", async () => {
    const pins = join(work, "pins-release.txt");
    writeFileSync(pins, `${standIn.sha256}  ${file()}\n`);
    const r = await installFrom("tampered", { DAGGER_CHECKSUMS_FILE: pins });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/sha256 mismatch .*\(from .*pins-release\.txt\)/);
    expect(r.requests).toEqual([`/tampered/${version}/${file()}`]);
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
