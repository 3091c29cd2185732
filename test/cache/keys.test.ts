import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IMAGE_NAMES } from "../../src/core/catalog.js";
import {
  ancestry,
  changedParts,
  computeKey,
  decodeParts,
  encodeParts,
  instructionsOf,
  parseDockerfile,
  type RunKeys,
  runKeys,
  shortParts,
} from "../../src/cache/keys.js";
import { deepMerge, loadManifest } from "../../src/core/manifest.js";
import { buildArgs, resolve } from "../../src/build/plan.js";
import { fsContext } from "../support/context.js";

const RECIPE = join(import.meta.dirname, "..", "..", "dockerfiles", "debian");
const BASE = `sha256:${"1".repeat(64)}`;

describe("parseDockerfile", () => {
  it("joins continuation lines and drops comments", () => {
    expect(instructionsOf("# c\nRUN a \\\n  # inner comment\n  b\n\nCOPY x /y\n")).toEqual(["RUN a b", "COPY x /y"]);
  });

  it("finds each stage's context files, stage references and arguments", () => {
    const parsed = parseDockerfile(readFileSync(join(RECIPE, "Dockerfile"), "utf8"));
    const login = parsed.stages.find((s) => s.name === "login")!;
    expect(login.from).toBe("login-os");
    expect(login.sources).toContain("rootfs/usr/local/bin/login-entrypoint.sh");
    expect(login.sources).toContain("packages/slurm");
    expect(login.args).toEqual(["SLURM_VERSION"]);
    expect(ancestry(parsed, "login").map((s) => s.name)).toEqual([
      "base-os",
      "mpi-os",
      "fetch",
      "kubectl",
      "sackd-os",
      "login-os",
      "apt-lists",
      "login",
    ]);
    expect(parsed.globalArgs.get("BASE_IMAGE")).toBe("docker.io/library/ubuntu:24.04");
  });

  it("keys the package set on the compile's stages only", () => {
    const parsed = parseDockerfile(readFileSync(join(RECIPE, "Dockerfile.packages"), "utf8"));
    expect(ancestry(parsed, "packages").map((s) => s.name)).toEqual([
      "build-base",
      "build-tools",
      "fetch",
      "slurm-src",
      "slurm-deps",
      "slurm-build",
      "pyxis-src",
      "pyxis-build",
      "packages",
    ]);
  });

  it("refuses what it cannot key: wildcards, unknown stages", () => {
    expect(() => parseDockerfile("FROM a AS b\nCOPY *.sh /x/\n")).toThrow(/wildcards/);
    expect(() => parseDockerfile("FROM a AS b\nCOPY --from=nope /x /y\n")).toThrow(/names no earlier stage/);
  });
});

describe("the keys of a run, flipping each input", () => {
  let dir: string;
  let baseline: RunKeys;
  const manifest = loadManifest();
  const resolved = resolve(manifest, { flavor: "debian13", group: "all" });

  const keysWith = async (
    change: { args?: Record<string, string>; base?: string; buildBase?: string; buildPlatform?: string; manifest?: unknown } = {},
  ) => {
    const m = change.manifest ? loadManifest(change.manifest) : manifest;
    const r = change.manifest ? resolve(m, { flavor: "debian13", group: "all" }) : resolved;
    return runKeys({
      manifest: m,
      resolved: r,
      context: fsContext(dir),
      buildArgs: { ...buildArgs(m, r), ...(change.args ?? {}) },
      baseDigest: change.base ?? BASE,
      ...(change.buildBase ? { buildBaseDigest: change.buildBase } : {}),
      ...(change.buildPlatform ? { buildPlatform: change.buildPlatform } : {}),
    });
  };
  /** Which keys differ from the baseline: "packages" and image names. */
  const changed = (keys: RunKeys) => [
    ...(keys.packages.key !== baseline.packages.key ? ["packages"] : []),
    ...IMAGE_NAMES.filter((name) => keys.images[name]!.key !== baseline.images[name]!.key),
  ];
  const edit = (path: string, change: (text: string) => string) => {
    const file = join(dir, path);
    writeFileSync(file, change(readFileSync(file, "utf8")));
  };
  const ALL = [...IMAGE_NAMES];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "slinky-keys-"));
    cpSync(RECIPE, dir, { recursive: true });
    baseline = await keysWith();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("gives 9 distinct keys and the same keys again for the same inputs", async () => {
    const all = [baseline.packages.key, ...Object.values(baseline.images).map((k) => k.key)];
    expect(new Set(all).size).toBe(9);
    expect(all.every((k) => /^[0-9a-f]{64}$/.test(k))).toBe(true);
    expect(changed(await keysWith())).toEqual([]);
  });

  it("Slurm source sha256: the package set and every image", async () => {
    const keys = await keysWith({ args: { SLURM_SHA256: "f".repeat(64) } });
    expect(changed(keys)).toEqual(["packages", ...ALL]);
    expect(changedParts(baseline.packages.parts, keys.packages.parts)).toEqual(["arg:SLURM_SHA256"]);
    expect(changedParts(baseline.images.slurmdbd!.parts, keys.images.slurmdbd!.parts)).toEqual(["packages"]);
  });

  it("Slurm version (a new pin): the package set and every image", async () => {
    const keys = await keysWith({ manifest: { slurm: { "25.11": { version: "25.11.9" } } } });
    expect(changed(keys)).toEqual(["packages", ...ALL]);
  });

  it("base image digest: everything", async () => {
    const keys = await keysWith({ base: `sha256:${"2".repeat(64)}` });
    expect(changed(keys)).toEqual(["packages", ...ALL]);
    // The package set compiles on the build machine's image: BUILD_BASE_IMAGE, BASE_IMAGE's index by default.
    expect(changedParts(baseline.packages.parts, keys.packages.parts)).toEqual(["buildBase"]);
    expect(changedParts(baseline.images.slurmd!.parts, keys.images.slurmd!.parts)).toEqual(["base", "packages"]);
  });

  it("the build machine's platform (cross-compiled or native package set): the package set and every image", async () => {
    expect(changed(await keysWith({ buildPlatform: "linux/amd64" }))).toEqual([]);
    const keys = await keysWith({ buildPlatform: "linux/arm64" });
    expect(changed(keys)).toEqual(["packages", ...ALL]);
    expect(changedParts(baseline.packages.parts, keys.packages.parts)).toEqual(["buildPlatform"]);
    expect(changedParts(baseline.images.login!.parts, keys.images.login!.parts)).toEqual(["packages"]);
    // BuildKit's automatic TARGETARCH is the platform part, not a build argument of its own.
    expect(Object.keys(baseline.packages.parts).filter((name) => /TARGET|BUILDPLATFORM/.test(name))).toEqual([]);
  });

  it("a build machine image of its own (BUILD_BASE_IMAGE): keyed by its digest, the package set only through it", async () => {
    const args = { BUILD_BASE_IMAGE: "local/debian:trixie-amd64" };
    await expect(keysWith({ args })).rejects.toThrow(/BUILD_BASE_IMAGE names "local\/debian:trixie-amd64", not BASE_IMAGE: the key needs its digest/);
    expect(changed(await keysWith({ args, buildBase: BASE }))).toEqual([]);
    const keys = await keysWith({ args, buildBase: `sha256:${"3".repeat(64)}` });
    expect(changed(keys)).toEqual(["packages", ...ALL]);
    expect(changedParts(baseline.packages.parts, keys.packages.parts)).toEqual(["buildBase"]);
    await expect(keysWith({ args, buildBase: "local/debian:trixie-amd64" })).rejects.toThrow(/build base digest .* is not a sha256 digest/);
  });

  it("the flavor's archive for the target architecture (CROSS_APT_URIS) and the cross setup script: the package set", async () => {
    const keys = await keysWith({ args: { CROSS_APT_URIS: "http://ports.example/ubuntu-ports/" } });
    expect(changed(keys)).toEqual(["packages", ...ALL]);
    expect(changedParts(baseline.packages.parts, keys.packages.parts)).toEqual(["arg:CROSS_APT_URIS"]);
    edit("build/cross-apt.sh", (t) => `${t}\n# changed\n`);
    expect(changedParts(baseline.packages.parts, (await keysWith()).packages.parts)).toEqual(["file:build/cross-apt.sh"]);
  });

  it("the GPU plugins' compile packages, components and list: the package set; the node's libraries: the slurmd images only", async () => {
    for (const name of ["GPU_BUILD_PACKAGES", "GPU_APT_COMPONENTS", "GPU_PLUGINS"]) {
      const keys = await keysWith({ args: { [name]: "changed" } });
      expect(changed(keys), name).toEqual(["packages", ...ALL]);
      expect(changedParts(baseline.packages.parts, keys.packages.parts), name).toEqual([`arg:${name}`]);
    }
    for (const name of ["GPU_NODE_PACKAGES", "GPU_NODE_LIBRARIES"]) {
      const keys = await keysWith({ args: { [name]: "changed" } });
      expect(changed(keys), name).toEqual(["slurmd", "slurmd-pyxis"]);
    }
    edit("build/gpu-libraries.sh", (t) => `${t}\n# changed\n`);
    expect(changed(await keysWith())).toEqual(["slurmd", "slurmd-pyxis"]);
  });

  it("a build script of the compile (build-slurm.sh) and config.site: the package set, hence every image", async () => {
    edit("build/build-slurm.sh", (t) => `${t}\n# changed\n`);
    expect(changed(await keysWith())).toEqual(["packages", ...ALL]);
    const keys = await keysWith();
    expect(changedParts(baseline.packages.parts, keys.packages.parts)).toEqual(["file:build/build-slurm.sh"]);
    edit("build/config.site", (t) => `${t}\nenable_static=no\n`);
    expect(changedParts(baseline.packages.parts, (await keysWith()).packages.parts)).toEqual([
      "file:build/build-slurm.sh",
      "file:build/config.site",
    ]);
  });

  it("the build stages' dpkg configuration (build-stage.dpkg.cfg): the package set, hence every image, and no image's own stages", async () => {
    edit("build/build-stage.dpkg.cfg", (t) => `${t}path-exclude=/usr/share/lintian/*\n`);
    const keys = await keysWith();
    expect(changed(keys)).toEqual(["packages", ...ALL]);
    expect(changedParts(baseline.packages.parts, keys.packages.parts)).toEqual(["file:build/build-stage.dpkg.cfg"]);
    for (const name of ALL) expect(changedParts(baseline.images[name]!.parts, keys.images[name]!.parts)).toEqual(["packages"]);
  });

  it("a file only the login image uses (its entrypoint): login and login-pyxis, not the package set", async () => {
    edit("rootfs/usr/local/bin/login-entrypoint.sh", (t) => `${t}\n# changed\n`);
    const keys = await keysWith();
    expect(changed(keys)).toEqual(["login", "login-pyxis"]);
    expect(changedParts(baseline.images.login!.parts, keys.images.login!.parts)).toEqual([
      "file:rootfs/usr/local/bin/login-entrypoint.sh",
    ]);
  });

  it("slurmd's entrypoint: slurmd and slurmd-pyxis", async () => {
    edit("rootfs/usr/local/bin/slurmd-entrypoint.sh", (t) => `${t}\n# changed\n`);
    expect(changed(await keysWith())).toEqual(["slurmd", "slurmd-pyxis"]);
  });

  it("the shared entrypoint library: the images that copy it, not slurmdbd nor slurmrestd", async () => {
    const lib = (await fsContext(dir).files("rootfs/usr/local/lib/slinky"))[0]!;
    edit(lib, (t) => `${t}\n# changed\n`);
    expect(changed(await keysWith())).toEqual(["slurmctld", "slurmd", "sackd", "login", "slurmd-pyxis", "login-pyxis"]);
  });

  it("a package added to the shared OS stage (base-os): all 8 images, not the package set", async () => {
    edit("Dockerfile", (t) => t.replace("apt.sh install tini supervisor procps", "apt.sh install tini supervisor procps less"));
    expect(changed(await keysWith())).toEqual(ALL);
  });

  it("the package lists' stage (apt-lists): all 8 images, which take its lists, not the package set", async () => {
    edit("Dockerfile", (t) => t.replace("    apt.sh lists\n", "    apt.sh lists && true\n"));
    expect(changed(await keysWith())).toEqual(ALL);
  });

  it("a package added to login's OS stage: login and login-pyxis", async () => {
    edit("Dockerfile", (t) => t.replace("apt.sh install openssh-server authselect", "apt.sh install less openssh-server authselect"));
    expect(changed(await keysWith())).toEqual(["login", "login-pyxis"]);
  });

  it("a comment in either Dockerfile: nothing", async () => {
    edit("Dockerfile", (t) => t.replace("# Downloads:", "# Downloads (reworded):"));
    edit("Dockerfile.packages", (t) => `# a note\n${t}`);
    expect(changed(await keysWith())).toEqual([]);
  });

  it("a compile stage of Dockerfile.packages: the package set and every image; Dockerfile alone never the package set", async () => {
    edit("Dockerfile.packages", (t) => t.replace("install build-essential fakeroot", "install build-essential ccache fakeroot"));
    expect(changed(await keysWith())).toEqual(["packages", ...ALL]);
  });

  it("build arguments: kubectl's pin for the images with kubectl, the toolkit's for the pyxis images, pyxis's for the package set", async () => {
    expect(changed(await keysWith({ args: { KUBECTL_SHA256: "e".repeat(64) } }))).toEqual(["sackd", "login", "login-pyxis"]);
    expect(changed(await keysWith({ args: { NVIDIA_TOOLKIT_VERSION: "9.9.9-1" } }))).toEqual(["slurmd-pyxis", "login-pyxis"]);
    expect(changed(await keysWith({ args: { ENROOT_SHA256: "e".repeat(64) } }))).toEqual(["slurmd-pyxis", "login-pyxis"]);
    expect(changed(await keysWith({ args: { PYXIS_SHA256: "e".repeat(64) } }))).toEqual(["packages", ...ALL]);
    // BASE_IMAGE itself is keyed by digest only: the same digest under another name is the same base.
    expect(changed(await keysWith({ args: { BASE_IMAGE: "mirror.example/debian:trixie" } }))).toEqual([]);
  });

  it("build scripts of the images: node-setup.sh for the sshd images, install-pyxis.sh for the pyxis images", async () => {
    edit("build/node-setup.sh", (t) => `${t}\n# changed\n`);
    expect(changed(await keysWith())).toEqual(["slurmd", "login", "slurmd-pyxis", "login-pyxis"]);
    edit("build/node-setup.sh", (t) => t.replace("\n# changed\n", ""));
    edit("build/install-pyxis.sh", (t) => `${t}\n# changed\n`);
    expect(changed(await keysWith())).toEqual(["slurmd-pyxis", "login-pyxis"]);
  });

  it("a project label (vendor): every image, through that label only", async () => {
    const keys = await keysWith({ manifest: deepMerge({}, { project: { vendor: "someone else" } }) });
    expect(changed(keys)).toEqual(ALL);
    expect(changedParts(baseline.images.sackd!.parts, keys.images.sackd!.parts)).toEqual(["label:org.opencontainers.image.vendor"]);
  });

  it("refuses a base that is not a digest", async () => {
    await expect(keysWith({ base: "debian:trixie" })).rejects.toThrow(/not a sha256 digest/);
  });

  it("round-trips the parts through a label value", () => {
    const parts = baseline.images.login!.parts;
    expect(decodeParts(encodeParts(parts))).toEqual(shortParts(parts));
    expect(encodeParts(parts).length).toBeLessThan(4000);
  });
});

describe("computeKey on a small Dockerfile", () => {
  it("ignores context files no stage of the target uses", async () => {
    const dir = mkdtempSync(join(tmpdir(), "slinky-keys-"));
    try {
      writeFileSync(join(dir, "a"), "a");
      writeFileSync(join(dir, "b"), "b");
      const dockerfile = "ARG BASE_IMAGE=x\nFROM ${BASE_IMAGE} AS one\nCOPY a /a\nFROM one AS two\nFROM ${BASE_IMAGE} AS other\nCOPY b /b\n";
      const key = () => computeKey({ dockerfileName: "D", dockerfile, target: "two", context: fsContext(dir), buildArgs: {}, baseDigest: BASE });
      const before = await key();
      writeFileSync(join(dir, "b"), "changed");
      expect((await key()).key).toBe(before.key);
      writeFileSync(join(dir, "a"), "changed");
      expect((await key()).key).not.toBe(before.key);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
