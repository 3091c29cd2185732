/**
 * The recipe's cross-compile apt setup (dockerfiles/debian/build/cross-apt.sh),
 * without building anything: the deb822 rewrite that gives the target
 * architecture its own archive (Ubuntu serves arm64 from its ports archive),
 * checked by handing the rewritten file to the real apt-get and reading which
 * index files it would fetch for each architecture. Ubuntu itself cannot be
 * built on this machine (no Ubuntu mirror): this is the check that runs.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindMounts, parseDockerfile } from "../src/cache/keys.js";
import { loadManifest } from "../src/core/manifest.js";

const run = promisify(execFile);
const SCRIPT = join(import.meta.dirname, "..", "dockerfiles", "debian", "build", "cross-apt.sh");
const PORTS = loadManifest().flavors["ubuntu24.04"]?.aptArchives?.arm64 as string;

/** /etc/apt/sources.list.d/ubuntu.sources as the ubuntu:24.04 image ships it. */
const UBUNTU_SOURCES = `## Ubuntu distribution repository
##
## The following settings can be adjusted to configure which packages to use from Ubuntu.
## Mirror your choices (except for URIs and Suites) in the security section below to
## ensure timely security updates.
##
## Types: Append deb-src to enable the fetching of source package.
## URIs: A URL to the repository (you may add multiple URLs)
## Suites: Two suites: The distribution name and the updates suite.
## Components: Main, universe, restricted and multiverse.

Types: deb
URIs: http://archive.ubuntu.com/ubuntu/
Suites: noble noble-updates noble-backports
Components: main universe restricted multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

## Ubuntu security updates. Aside from URIs and Suites,
## this should mirror your choices in the previous section.
Types: deb
URIs: http://security.ubuntu.com/ubuntu/
Suites: noble-security
Components: main universe restricted multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
`;

const rewrite = async (text: string, build = "amd64", host = "arm64", uris = PORTS) => {
  const file = join(dir, "in.sources");
  writeFileSync(file, text);
  return (await run(SCRIPT, ["rewrite", build, host, uris, file])).stdout;
};

/** The index files apt-get would fetch from a sources.list.d holding `text`, for amd64 + arm64: "arch <- URL". */
async function fetchedIndexes(text: string): Promise<string[]> {
  const parts = mkdtempSync(join(dir, "parts-"));
  const lists = join(parts, "lists");
  mkdirSync(join(lists, "partial"), { recursive: true });
  writeFileSync(join(parts, "ubuntu.sources"), text);
  const { stdout } = await run("apt-get", [
    ...["-o", "Dir::Etc::SourceList=/dev/null", "-o", `Dir::Etc::SourceParts=${parts}`, "-o", `Dir::State::Lists=${lists}`],
    ...["-o", "APT::Architecture=amd64", "-o", "APT::Architectures::=amd64", "-o", "APT::Architectures::=arm64"],
    ...["update", "--print-uris"],
  ]);
  return stdout
    .split("\n")
    .map((line) => /^'([^']+\/binary-(amd64|arm64)\/Packages[^']*)'/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[2]} <- ${(m[1] as string).replace(/dists\/.*$/, "")}`);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "slinky-cross-apt-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("cross-apt.sh: the target architecture's archive (flavor data), Ubuntu 24.04's sources", () => {
  it("takes the ports archive from the manifest's ubuntu24.04 flavor", () => {
    expect(PORTS).toMatch(/^http:\/\/ports\.ubuntu\.com\/ubuntu-ports\/$/);
  });

  it("before: apt would fetch arm64's indexes from the amd64 archives, which do not serve arm64", async () => {
    const before = new Set(await fetchedIndexes(UBUNTU_SOURCES));
    expect(before).toContain("arm64 <- http://archive.ubuntu.com/ubuntu/");
    expect(before).toContain("arm64 <- http://security.ubuntu.com/ubuntu/");
  });

  it("after: amd64 from archive and security, arm64 from ports only, the same suites, components and key", async () => {
    const text = await rewrite(UBUNTU_SOURCES);
    expect(new Set(await fetchedIndexes(text))).toEqual(
      new Set(["amd64 <- http://archive.ubuntu.com/ubuntu/", "amd64 <- http://security.ubuntu.com/ubuntu/", `arm64 <- ${PORTS}`]),
    );
    const stanzas = text.split(/\n\s*\n/).filter((s) => /^URIs:/m.test(s));
    expect(stanzas).toHaveLength(4);
    const field = (stanza: string, name: string) => new RegExp(`^${name}: (.*)$`, "m").exec(stanza)?.[1];
    expect(stanzas.map((s) => [field(s, "URIs"), field(s, "Suites"), field(s, "Architectures")])).toEqual([
      ["http://archive.ubuntu.com/ubuntu/", "noble noble-updates noble-backports", "amd64"],
      [PORTS, "noble noble-updates noble-backports", "arm64"],
      ["http://security.ubuntu.com/ubuntu/", "noble-security", "amd64"],
      [PORTS, "noble-security", "arm64"],
    ]);
    for (const s of stanzas) {
      expect(field(s, "Components")).toBe("main universe restricted multiverse");
      expect(field(s, "Signed-By")).toBe("/usr/share/keyrings/ubuntu-archive-keyring.gpg");
    }
    // The comments stay with the original stanzas, once.
    expect(text.match(/## Ubuntu security updates/g)).toHaveLength(1);
  });

  it("leaves a stanza that names its architectures as it is", async () => {
    const pinned = "Types: deb\nURIs: http://archive.ubuntu.com/ubuntu/\nSuites: noble\nComponents: main\nArchitectures: amd64 i386\n";
    expect(await rewrite(pinned)).toBe(pinned);
  });

  it("the toolchain: crossbuild-essential-<arch> for a foreign architecture, nothing natively; unknown architectures refused", async () => {
    const native = (await run("dpkg", ["--print-architecture"])).stdout.trim();
    const foreign = native === "amd64" ? "arm64" : "amd64";
    expect((await run(SCRIPT, ["toolchain", native])).stdout).toBe("");
    expect((await run(SCRIPT, ["toolchain", foreign])).stdout.trim()).toBe(`crossbuild-essential-${foreign}`);
    await expect(run(SCRIPT, ["toolchain", "riscv64"])).rejects.toMatchObject({
      stderr: expect.stringContaining("unknown architecture 'riscv64' (valid: amd64, arm64)"),
    });
  });

  it("passes shellcheck, as do the other build scripts", async () => {
    const dirOf = join(import.meta.dirname, "..", "dockerfiles", "debian", "build");
    const scripts = ["cross-apt.sh", "apt.sh", "build-slurm.sh", "build-pyxis.sh"].map((name) => join(dirOf, name));
    const result = await run("shellcheck", ["--severity=style", ...scripts]).catch((error: { stdout: string }) => error);
    expect("stdout" in result ? result.stdout : "").toBe("");
  });
});

describe("the Dockerfiles' RUN mounts: what Dagger's dockerBuild can convert", () => {
  // Dagger's Directory.dockerBuild (v0.21.8, and its main branch on 2026-08-20) converts a
  // Dockerfile without the solver's capabilities; dockerfile2llb asks them for a read-write bind
  // mount, and the engine panics on a nil pointer (seen in test/engine's build-all, 2026-12-02).
  const dirOf = join(import.meta.dirname, "..", "dockerfiles");
  const readWrite = (o: Record<string, string>) =>
    [o.rw, o.readwrite].some((v) => v !== undefined && v !== "false") || o.ro === "false" || o.readonly === "false";
  it.each(["debian/Dockerfile", "debian/Dockerfile.packages"])("%s binds nothing read-write (rw, readwrite)", (name) => {
    const binds = parseDockerfile(readFileSync(join(dirOf, name), "utf8"))
      .stages.flatMap((stage) => stage.instructions)
      .flatMap(bindMounts);
    expect(binds.length).toBeGreaterThan(0);
    expect(binds.filter(readWrite)).toEqual([]);
  });
});
