/**
 * The recipe's apt.sh (dockerfiles/debian/build/apt.sh) in the flavor's base
 * image, run by the real apt-get against the machine's Debian mirror: the
 * --listed installs the steps after the compile make with the apt-lists
 * stage's lists. With lists that serve the install they update nothing; with
 * none, or with lists the mirror has moved on from (a stale cached stage),
 * they update and still install; and the lists never land in the image.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE_IMAGE, docker, dockerOk, type Engine, ensureBase, IMAGE_PREFIX, REPO, startEngine, stopEngine } from "./harness.js";

const MINUTE = 60_000;
const RECIPE = join(REPO, "dockerfiles", "debian");
const LOGS = join(REPO, "out", "apt-logs");
const image = (target: string) => `${IMAGE_PREFIX}/apt-${target}:test`;
/** A package the debootstrapped base does not have, small and without dependencies to speak of. */
const PACKAGE = "less";
const UPDATING = "apt.sh: the lists given cannot serve this; updating them";
/** What apt-get update prints when it fetches an archive's release file. */
const FETCHED_RELEASE = /(Get|Hit):\d+ \S+ \S+ InRelease/;

const mount = "--mount=type=bind,source=build/apt.sh,target=/usr/local/sbin/apt.sh";
const listsFrom = (stage: string) => `--mount=type=bind,from=${stage},source=/var/lib/apt/lists,target=/var/lib/apt/lists`;
const DOCKERFILE = `ARG BASE_IMAGE
FROM \${BASE_IMAGE} AS lists
RUN --mount=type=cache,target=/var/cache/apt,sharing=private ${mount} apt.sh lists

# The lists of a stage cached long ago: the package's file has moved in the
# pool since, and so has the archive's release file (the old one is gone: a
# signed release file cannot be forged here).
FROM lists AS stale
RUN sed -i -E 's#^(Filename: .*/${PACKAGE}_[^/]*)\\.deb$#\\1-gone.deb#' /var/lib/apt/lists/*_Packages \\
 && grep -q '^Filename: .*/${PACKAGE}_.*-gone.deb$' /var/lib/apt/lists/*_Packages \\
 && rm /var/lib/apt/lists/*InRelease

FROM \${BASE_IMAGE} AS given
RUN --mount=type=cache,target=/var/cache/apt,sharing=private ${listsFrom("lists")} ${mount} apt.sh --listed install ${PACKAGE}

FROM \${BASE_IMAGE} AS none
RUN --mount=type=tmpfs,target=/var/lib/apt/lists ${mount} apt.sh --listed install ${PACKAGE}

FROM \${BASE_IMAGE} AS gone
RUN --mount=type=cache,target=/var/cache/apt,sharing=private ${listsFrom("stale")} ${mount} apt.sh --listed install ${PACKAGE}
`;

let engine: Engine;
let dir: string;

beforeAll(async () => {
  engine = await startEngine();
  await ensureBase(BASE_IMAGE);
  mkdirSync(LOGS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "slinky-apt-"));
  writeFileSync(join(dir, "Dockerfile"), DOCKERFILE);
}, 70 * MINUTE);

afterAll(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const target of ["given", "none", "gone"]) await docker(["image", "rm", "-f", image(target)]);
  if (engine) await stopEngine(engine);
}, 5 * MINUTE);

/** Builds one target (run again, not taken from the cache: a cached step prints nothing) and returns its own step's log. */
async function build(target: string): Promise<string> {
  const logFile = join(LOGS, `${target}.log`);
  rmSync(logFile, { force: true });
  const args = ["build", "--network", "host", "--progress", "plain", "--build-arg", `BASE_IMAGE=${BASE_IMAGE}`];
  const result = await docker([...args, "--no-cache", "-f", join(dir, "Dockerfile"), "--target", target, "-t", image(target), RECIPE], {
    timeoutMs: 10 * MINUTE,
    logFile,
  });
  if (result.code !== 0) throw new Error(`build of ${target} failed (exit ${result.code}); log ${logFile}:\n${result.stderr.slice(-4000)}`);
  // The plain progress output of the target's own RUN step.
  const text = readFileSync(logFile, "utf8");
  const step = new RegExp(`^#(\\d+) \\[${target} \\d+/\\d+\\] RUN`, "m").exec(text);
  if (!step) throw new Error(`no RUN step of ${target} in ${logFile}`);
  return text
    .split("\n")
    .filter((line) => line.startsWith(`#${step[1]} `))
    .join("\n");
}

async function installed(target: string): Promise<string> {
  return (await dockerOk(["run", "--rm", "--entrypoint", "dpkg-query", image(target), "-W", "-f", "${Status}", PACKAGE])).trim();
}

/** The index files in the image's own /var/lib/apt/lists and /var/cache/apt (none: the step's lists and its updates were mounts). */
async function shippedLists(target: string): Promise<string> {
  return (await dockerOk(["run", "--rm", "--entrypoint", "find", image(target), "/var/lib/apt/lists", "/var/cache/apt", "-name", "*_Packages*"])).trim();
}

describe("apt.sh --listed install, with the real apt-get in the base image", () => {
  it("installs from the lists it is given without updating them", async () => {
    const log = await build("given");
    expect(log).not.toMatch(FETCHED_RELEASE);
    expect(log).not.toContain(UPDATING);
    expect(await installed("given")).toBe("install ok installed");
    expect(await shippedLists("given")).toBe("");
  }, 15 * MINUTE);

  it("updates the lists when it is given none, then installs", async () => {
    const log = await build("none");
    expect(log).toContain(UPDATING);
    expect(log).toMatch(FETCHED_RELEASE);
    expect(await installed("none")).toBe("install ok installed");
  }, 15 * MINUTE);

  it("updates lists the mirror has moved on from, then installs the package the mirror has", async () => {
    const log = await build("gone");
    expect(log).toContain(UPDATING);
    // The index itself fetched again (it no longer matches the archive's release file), then the package from the pool.
    expect(log).toMatch(/Get:\d+ \S+ \S+ \S+ Packages \[/);
    expect(log).toMatch(new RegExp(`Get:\\d+ \\S+ \\S+ \\S+ ${PACKAGE} `));
    expect(log).not.toContain("-gone.deb");
    expect(await installed("gone")).toBe("install ok installed");
    expect(await shippedLists("gone")).toBe("");
  }, 15 * MINUTE);
  it("components adds apt components to one-line and deb822 sources, each once, and refuses a bad name", async () => {
    const script = [
      "set -e",
      "mkdir -p /etc/apt/sources.list.d",
      "printf 'deb http://mirror.invalid/debian trixie main\\n# deb http://mirror.invalid/debian trixie main\\n' >/etc/apt/sources.list",
      "printf 'Types: deb\\nURIs: http://mirror.invalid/debian\\nSuites: trixie trixie-updates\\nComponents: main contrib\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' >/etc/apt/sources.list.d/debian.sources",
      "apt.sh components contrib non-free",
      "apt.sh components non-free",
      "cat /etc/apt/sources.list /etc/apt/sources.list.d/debian.sources",
      "if apt.sh components 'non free'; then echo accepted; fi",
    ].join("\n");
    const r = await docker(["run", "--rm", "--network", "none", "-v", `${join(RECIPE, "build", "apt.sh")}:/usr/local/sbin/apt.sh:ro`, "--entrypoint", "sh", BASE_IMAGE, "-c", script]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("deb http://mirror.invalid/debian trixie main contrib non-free\n");
    // A comment is not a source.
    expect(r.stdout).toContain("# deb http://mirror.invalid/debian trixie main\n");
    expect(r.stdout).toContain("Components: main contrib non-free\n");
    expect(r.stdout).not.toContain("accepted");
    expect(r.stderr).toContain("apt.sh: 'non free' is not an apt component");
  }, 5 * MINUTE);
});
