/**
 * linux/amd64 and linux/arm64 as data: the platform input, the manifest's
 * per-architecture pins and per-flavor platforms, the refusal of a platform
 * whose pins are missing, and each platform's build arguments and keys.
 */
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGE_NAMES } from "../../src/core/catalog.js";
import { checkInputs, parsePlatforms } from "../../src/core/inputs.js";
import { runKeys } from "../../src/cache/keys.js";
import { loadManifest, parseManifest } from "../../src/core/manifest.js";
import { buildArgs, downloadFor, MissingChecksumError, missingChecksums, plan, requireChecksums, resolve } from "../../src/build/plan.js";
import { fsContext } from "../support/context.js";

const ARM64_KUBECTL = "58f82f9fe796c375c5c4b8439850b0f3f4d401a52434052f2df46035a8789e25";
const HEX = "ab".repeat(32);
/** Site manifest pinning the arm64 enroot .debs (the checksums are made up: only the refusal is under test). */
const ENROOT_ARM64 = {
  inputs: {
    enroot: { arch: { arm64: { url: "https://mirror.example/enroot_4.2.1-1_arm64.deb", sha256: HEX } } },
    enrootCaps: { arch: { arm64: { url: "https://mirror.example/enroot+caps_4.2.1-1_arm64.deb", sha256: HEX } } },
  },
};

describe("the platform inputs", () => {
  it.each([
    ["linux/amd64", ["linux/amd64"]],
    ["linux/arm64", ["linux/arm64"]],
    ["linux/amd64,linux/arm64", ["linux/amd64", "linux/arm64"]],
    ["linux/arm64, linux/amd64", ["linux/arm64", "linux/amd64"]],
  ])("--platforms %j is %j", (value, expected) => {
    expect(parsePlatforms(value)).toEqual(expected);
  });

  it.each([
    ["", 'invalid platforms "": it is empty: valid values are linux/amd64, linux/arm64, a comma-separated list'],
    ["linux/arm", 'invalid platforms "linux/arm": "linux/arm" is not a platform: valid values are linux/amd64, linux/arm64'],
    ["arm64", '"arm64" is not a platform'],
    ["linux/amd64,linux/amd64", "linux/amd64 is given twice"],
    ["linux/amd64,,linux/arm64", "it has an empty entry"],
    ["linux/amd64,", "it has an empty entry"],
  ])("refuses --platforms %j", (value, message) => {
    expect(() => parsePlatforms(value)).toThrow(message);
  });

  it("--platform takes exactly one platform", () => {
    expect(parsePlatforms("linux/arm64", "platform")).toEqual(["linux/arm64"]);
    expect(() => checkInputs({ platform: "linux/amd64,linux/arm64" })).toThrow(
      'unknown platform "linux/amd64,linux/arm64": valid values are linux/amd64, linux/arm64',
    );
  });
});

describe("the manifest's platforms and per-architecture pins", () => {
  const manifest = loadManifest();

  it("builds linux/amd64 by default; both flavors can build linux/arm64", () => {
    expect(manifest.defaults.platforms).toEqual(["linux/amd64"]);
    expect(manifest.flavors["ubuntu24.04"]?.platforms).toEqual(["linux/amd64", "linux/arm64"]);
    expect(manifest.flavors["debian13"]?.platforms).toEqual(["linux/amd64", "linux/arm64"]);
  });

  it("a flavor without platforms is linux/amd64 only", () => {
    const m = loadManifest({ flavors: { plain: { family: "debian", description: "d", baseImage: "debian:trixie", baseDigest: null } } });
    expect(m.flavors.plain?.platforms).toEqual(["linux/amd64"]);
    expect(() => resolve(m, { flavor: "plain", platforms: "linux/arm64" })).toThrow(
      'invalid platforms "linux/arm64": flavor plain is not built for linux/arm64',
    );
  });

  it("pins kubectl for arm64 and leaves the arm64 enroot .debs unpinned, saying why", () => {
    const kubectl = downloadFor("kubectl", manifest.inputs.kubectl, "linux/arm64");
    expect(kubectl).toMatchObject({ version: "1.35.0", url: "https://dl.k8s.io/release/v1.35.0/bin/linux/arm64/kubectl", sha256: ARM64_KUBECTL });
    for (const name of ["enroot", "enrootCaps"] as const) {
      const pin = downloadFor(name, manifest.inputs[name], "linux/arm64");
      expect(pin.url).toMatch(/_4\.2\.1-1_arm64\.deb$/);
      expect(pin.sha256).toBeNull();
      expect(pin.checksumSource).toMatch(/no published pin/);
    }
    // amd64 keeps the top-level pins; architecture-free downloads are the same everywhere.
    expect(downloadFor("kubectl", manifest.inputs.kubectl, "linux/amd64")).toBe(manifest.inputs.kubectl);
    expect(downloadFor("pyxis", manifest.inputs.pyxis, "linux/arm64")).toBe(manifest.inputs.pyxis);
  });

  it.each([
    ["an unknown architecture", { inputs: { kubectl: { arch: { riscv64: { url: "https://x.example/k", sha256: null } } } } }, "inputs.kubectl.arch"],
    ["an arch pin with a bad sha256", { inputs: { kubectl: { arch: { arm64: { sha256: "x" } } } } }, "inputs.kubectl.arch.arm64.sha256"],
    ["an arch pin without a URL", { inputs: { pyxis: { arch: { arm64: { sha256: null } } } } }, "inputs.pyxis.arch.arm64.url"],
    ["an unknown platform", { defaults: { platforms: ["linux/s390x"] } }, "defaults.platforms.0"],
    ["no platforms", { defaults: { platforms: [] } }, "defaults.platforms"],
    ["a platform listed twice", { flavors: { debian13: { platforms: ["linux/arm64", "linux/arm64"] } } }, "flavors.debian13.platforms: linux/arm64 is listed twice"],
    [
      "a default platform the default flavor lacks",
      { flavors: { "ubuntu24.04": { platforms: ["linux/amd64"] } }, defaults: { platforms: ["linux/arm64"] } },
      "defaults.platforms: linux/arm64 is not a platform of the default flavor ubuntu24.04",
    ],
    ["a credential in an arm64 URL", { inputs: { kubectl: { arch: { arm64: { url: "https://u:p@x.example/k" } } } } }, "must not hold credentials"],
    ["an unknown field in the NVIDIA repositories", { nvidiaToolkit: { arch: { arm64: { repo: "https://x.example" } } } }, "nvidiaToolkit.arch.arm64"],
  ])("refuses %s", (_what, override, message) => {
    expect(() => loadManifest(override)).toThrow(message);
  });

  it("a site manifest pins the arm64 files without restating the rest", () => {
    const m = loadManifest(ENROOT_ARM64);
    expect(downloadFor("enroot", m.inputs.enroot, "linux/arm64").sha256).toBe(HEX);
    expect(m.inputs.enroot.sha256).toBe(manifest.inputs.enroot.sha256);
    expect(downloadFor("kubectl", m.inputs.kubectl, "linux/arm64").sha256).toBe(ARM64_KUBECTL);
  });
});

describe("a platform whose pins are missing is refused before any build", () => {
  const manifest = loadManifest();

  it("linux/amd64 alone needs nothing more", () => {
    const resolved = resolve(manifest, { group: "all" });
    expect(resolved.platforms).toEqual(["linux/amd64"]);
    expect(missingChecksums(manifest, resolved)).toEqual([]);
  });

  it("core on linux/arm64 builds: kubectl is pinned for arm64 and core has no enroot", () => {
    const resolved = resolve(manifest, { group: "core", platforms: "linux/amd64,linux/arm64" });
    expect(() => requireChecksums(manifest, resolved)).not.toThrow();
  });

  it("extras on linux/arm64 are refused naming each input and the platform", () => {
    const resolved = resolve(manifest, { group: "all", platforms: "linux/amd64,linux/arm64" });
    expect(missingChecksums(manifest, resolved)).toEqual(["inputs.enroot (linux/arm64)", "inputs.enrootCaps (linux/arm64)"]);
    const error = (() => {
      try {
        requireChecksums(manifest, resolved);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error).toBeInstanceOf(MissingChecksumError);
    expect(error?.message).toBe(
      "no sha256 is pinned for inputs.enroot (linux/arm64), inputs.enrootCaps (linux/arm64): refusing to build with an unchecked download. " +
        "Supply the checksum in a site manifest (dagger call --manifest site.json ...), e.g. " +
        '{"inputs": {"enroot": {"arch": {"arm64": {"url": "<url>", "sha256": "<64 hex>"}}}}}',
    );
  });

  it("one image on linux/arm64: slurmd-pyxis is refused, sackd is not", () => {
    expect(() => requireChecksums(manifest, resolve(manifest, { image: "slurmd-pyxis", platforms: "linux/arm64" }))).toThrow("inputs.enroot (linux/arm64)");
    expect(() => requireChecksums(manifest, resolve(manifest, { image: "sackd", platforms: "linux/arm64" }))).not.toThrow();
  });

  it("an architecture with no entry at all is unpinned, as is a missing NVIDIA repository", () => {
    const json = structuredClone(loadManifest());
    delete json.inputs.kubectl.arch;
    delete json.nvidiaToolkit.arch;
    const m = parseManifest(json, "manifest.json without the arm64 entries");
    const resolved = resolve(m, { group: "all", platforms: "linux/arm64" });
    expect(missingChecksums(m, resolved)).toEqual([
      "inputs.kubectl (linux/arm64)",
      "inputs.enroot (linux/arm64)",
      "inputs.enrootCaps (linux/arm64)",
      "nvidiaToolkit.arch.arm64.repository (linux/arm64)",
    ]);
  });

  it("with the arm64 enroot pins from a site manifest, all 8 images may build for both platforms", () => {
    const m = loadManifest(ENROOT_ARM64);
    expect(() => requireChecksums(m, resolve(m, { group: "all", platforms: "linux/arm64,linux/amd64" }))).not.toThrow();
  });
});

describe("each platform's build arguments and plan", () => {
  const manifest = loadManifest(ENROOT_ARM64);
  const resolved = resolve(manifest, { group: "all", platforms: "linux/arm64,linux/amd64" });

  it("orders the platforms amd64 first, whatever order they were given in", () => {
    expect(resolved.platforms).toEqual(["linux/amd64", "linux/arm64"]);
  });

  it("differ only in the architecture's files", () => {
    const amd64 = buildArgs(manifest, resolved, "linux/amd64");
    const arm64 = buildArgs(manifest, resolved, "linux/arm64");
    const differ = Object.keys(amd64).filter((name) => amd64[name] !== arm64[name]);
    expect(differ.sort()).toEqual([
      "CROSS_APT_URIS",
      "ENROOT_CAPS_SHA256",
      "ENROOT_CAPS_URL",
      "ENROOT_SHA256",
      "ENROOT_URL",
      "KUBECTL_SHA256",
      "KUBECTL_URL",
      "NVIDIA_REPO_URL",
    ]);
    // Ubuntu (the default flavor) serves arm64 from its ports archive: the cross-compile's target libraries come from there.
    expect(arm64.CROSS_APT_URIS).toBe("http://ports.ubuntu.com/ubuntu-ports/");
    expect(amd64.CROSS_APT_URIS).toBe("http://archive.ubuntu.com/ubuntu/");
    expect(arm64.KUBECTL_URL).toBe("https://dl.k8s.io/release/v1.35.0/bin/linux/arm64/kubectl");
    expect(arm64.NVIDIA_REPO_URL).toBe("https://nvidia.github.io/libnvidia-container/stable/deb/arm64");
    expect(amd64.NVIDIA_REPO_URL).toBe("https://nvidia.github.io/libnvidia-container/stable/deb/amd64");
    expect(buildArgs(manifest, resolved)).toEqual(amd64);
  });

  it("Debian serves every architecture from one mirror: no second archive for the cross-compile", () => {
    const debian = resolve(manifest, { flavor: "debian13", group: "core", platforms: "linux/arm64" });
    expect(buildArgs(manifest, debian, "linux/arm64").CROSS_APT_URIS).toBe("");
    expect(buildArgs(manifest, debian, "linux/amd64").CROSS_APT_URIS).toBe("");
  });

  it("refuses an archive that is not an http(s) URL or an unknown architecture, naming the field", () => {
    const bad = (aptArchives: unknown) => () => loadManifest({ flavors: { "ubuntu24.04": { aptArchives } } });
    expect(bad({ arm64: "ports.example/ubuntu-ports" })).toThrow(/flavors\.ubuntu24\.04\.aptArchives\.arm64/);
    expect(bad({ riscv64: "http://ports.example/ubuntu-ports/" })).toThrow(/riscv64/);
  });

  it("plan shows the platforms and each one's build arguments", () => {
    const document = plan(manifest, { group: "core", platforms: "linux/arm64,linux/amd64" });
    expect(document.platforms).toEqual(["linux/amd64", "linux/arm64"]);
    expect(Object.keys(document.buildArgs)).toEqual(["linux/amd64", "linux/arm64"]);
    expect(document.buildArgs["linux/arm64"]?.KUBECTL_SHA256).toBe(ARM64_KUBECTL);
    expect(plan(loadManifest(), { group: "all" }).platforms).toEqual(["linux/amd64"]);
    expect(plan(loadManifest(), { group: "all", platforms: "linux/arm64" }).missingChecksums).toEqual([
      "inputs.enroot (linux/arm64)",
      "inputs.enrootCaps (linux/arm64)",
    ]);
  });

  it("refuses a bad platform in plan with the others' error style", () => {
    expect(() => plan(manifest, { platforms: "linux/amd64,linux/amd64" })).toThrow(
      'invalid platforms "linux/amd64,linux/amd64": linux/amd64 is given twice: valid values are linux/amd64, linux/arm64',
    );
  });
});

describe("every key takes the platform", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "slinky-platform-keys-"));
    cpSync(join(import.meta.dirname, "..", "..", "dockerfiles", "debian"), dir, { recursive: true });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("gives the package set and all 8 images other keys on arm64, and the same keys again for the same platform", async () => {
    const manifest = loadManifest(ENROOT_ARM64);
    const resolved = resolve(manifest, { flavor: "ubuntu24.04", group: "all" });
    const base = manifest.flavors["ubuntu24.04"]?.baseDigest as string;
    const keys = (platform: "linux/amd64" | "linux/arm64") =>
      runKeys({ manifest, resolved, context: fsContext(dir), buildArgs: buildArgs(manifest, resolved, platform), baseDigest: base, platform });
    const [amd64, arm64, again] = await Promise.all([keys("linux/amd64"), keys("linux/arm64"), keys("linux/arm64")]);
    expect(arm64.packages.key).not.toBe(amd64.packages.key);
    expect(arm64.packages.parts.platform).not.toBe(amd64.packages.parts.platform);
    for (const name of IMAGE_NAMES) expect(arm64.images[name]?.key, name).not.toBe(amd64.images[name]?.key);
    expect(again).toEqual(arm64);
    // Without a platform a key is linux/amd64's, as before.
    const unnamed = await runKeys({ manifest, resolved, context: fsContext(dir), buildArgs: buildArgs(manifest, resolved), baseDigest: base });
    expect(unnamed).toEqual(amd64);
  });
});
