import { describe, expect, it } from "vitest";
import { imageSpec } from "../../src/core/catalog.js";
import { loadManifest } from "../../src/core/manifest.js";
import {
  buildArgs,
  imageLabels,
  MissingChecksumError,
  missingChecksums,
  plan,
  requireChecksums,
  resolve,
} from "../../src/build/plan.js";

const manifest = loadManifest();
const SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const REGISTRY = "registry.gitlab.com/crusoeenergy/island/external/slinky-containers";
const patch = manifest.slurm["25.11"]!.version;

describe("resolve", () => {
  it("takes the manifest's defaults", () => {
    const resolved = resolve(manifest);
    expect([resolved.line, resolved.slurm.version, resolved.flavorName, resolved.group]).toEqual([
      "25.11", patch, "ubuntu24.04", "all",
    ]);
    expect(resolved.images).toHaveLength(8);
  });

  it("accepts the pinned patch release for its line", () => {
    expect(resolve(manifest, { slurmVersion: patch }).line).toBe("25.11");
  });

  it("picks one image over a group", () => {
    expect(resolve(manifest, { image: "slurmd", group: "core" }).images.map((i) => i.name)).toEqual(["slurmd"]);
  });

  it.each([
    [{ slurmVersion: "24.05" }, `unknown Slurm version "24.05": valid values are 25.11, ${patch}`],
    [{ slurmVersion: "25.11.0" }, 'unknown Slurm version "25.11.0"'],
    [{ flavor: "rocky9" }, 'unknown flavor "rocky9": valid values are ubuntu24.04, ubuntu26.04, debian13'],
    [{ group: "gpu" }, 'unknown group "gpu": valid values are core, extras, all'],
    [{ image: "slurmctl" }, 'unknown image "slurmctl": valid values are slurmctld, slurmd'],
  ])("refuses %j naming the valid values", (selection, message) => {
    expect(() => resolve(manifest, selection)).toThrow(message);
  });
});

describe("checksums", () => {
  const unknownKey = loadManifest({ inputs: { nvidiaKey: { sha256: null, fingerprint: undefined } } });

  it("pins every download of every image out of the box (the NVIDIA key by fingerprint)", () => {
    expect(missingChecksums(manifest, resolve(manifest))).toEqual([]);
    expect(buildArgs(manifest, resolve(manifest)).NVIDIA_KEY_FINGERPRINT).toMatch(/^[0-9A-F]{40}$/);
  });

  it("lists only the downloads the chosen images fetch", () => {
    expect(missingChecksums(unknownKey, resolve(unknownKey, { group: "core" }))).toEqual([]);
    expect(missingChecksums(unknownKey, resolve(unknownKey, { group: "extras" }))).toEqual(["inputs.nvidiaKey"]);
  });

  it("refuses to build an image whose download has no checksum, saying how to supply one", () => {
    expect(() => requireChecksums(unknownKey, resolve(unknownKey, { image: "login-pyxis" }))).toThrow(MissingChecksumError);
    expect(() => requireChecksums(unknownKey, resolve(unknownKey, { image: "login-pyxis" }))).toThrow(
      /no sha256 is pinned for inputs\.nvidiaKey: refusing .* --manifest/,
    );
    expect(() => requireChecksums(unknownKey, resolve(unknownKey, { image: "login" }))).not.toThrow();
  });

  it("refuses an unchecked Slurm source too", () => {
    const unchecked = loadManifest({ slurm: { "25.11": { sha256: null } } });
    expect(() => requireChecksums(unchecked, resolve(unchecked, { image: "slurmctld" }))).toThrow(/slurm\.25\.11/);
  });
});

describe("buildArgs", () => {
  it("feeds the Dockerfile every pinned download from the manifest", () => {
    const args = buildArgs(manifest, resolve(manifest, { flavor: "debian13" }));
    expect(args).toMatchObject({
      BASE_IMAGE: "docker.io/library/debian:trixie",
      SLURM_VERSION: patch,
      SLURM_URL: manifest.slurm["25.11"]!.url,
      SLURM_SHA256: manifest.slurm["25.11"]!.sha256,
      KUBECTL_URL: manifest.inputs.kubectl.url,
      NVIDIA_TOOLKIT_VERSION: manifest.nvidiaToolkit.version,
    });
    expect(Object.values(args).every((value) => typeof value === "string")).toBe(true);
  });

  it("pins the base image by digest where the manifest knows it", () => {
    const flavor = manifest.flavors["ubuntu24.04"]!;
    expect(buildArgs(manifest, resolve(manifest)).BASE_IMAGE).toBe(`${flavor.baseImage}@${flavor.baseDigest}`);
  });

  it("passes an unknown checksum as empty, so the download fails in the build too", () => {
    const unknown = loadManifest({ inputs: { kubectl: { sha256: null } } });
    expect(buildArgs(unknown, resolve(unknown)).KUBECTL_SHA256).toBe("");
  });
});

describe("imageLabels", () => {
  it("labels an image with OCI's keys, licenses spelled right", () => {
    const resolved = resolve(manifest);
    const labels = imageLabels(manifest, resolved, imageSpec("slurmctld"), { revision: SHA, created: "2026-11-28T00:00:00Z" });
    expect(labels).toMatchObject({
      "org.opencontainers.image.title": "Slurm Control Plane",
      "org.opencontainers.image.version": patch,
      "org.opencontainers.image.revision": SHA,
      "org.opencontainers.image.created": "2026-11-28T00:00:00Z",
      "org.opencontainers.image.licenses": "GPL-2.0-or-later",
      "org.opencontainers.image.base.name": "docker.io/library/ubuntu:24.04",
      "org.opencontainers.image.base.digest": manifest.flavors["ubuntu24.04"]!.baseDigest,
    });
    expect(Object.keys(labels)).not.toContain("org.opencontainers.image.license");
  });

  it("refuses a created time that is not a date", () => {
    expect(() => imageLabels(manifest, resolve(manifest), imageSpec("slurmd"), { created: "yesterday" })).toThrow(
      'invalid commit timestamp "yesterday": not an RFC 3339 date-time',
    );
  });

  it("leaves out provenance it does not know", () => {
    const labels = imageLabels(manifest, resolve(manifest, { flavor: "debian13" }), imageSpec("slurmd"));
    expect(Object.keys(labels)).not.toEqual(expect.arrayContaining(["org.opencontainers.image.revision"]));
    expect(labels["org.opencontainers.image.base.digest"]).toBeUndefined();
  });
});

describe("plan", () => {
  it("plans a local build with no tags when no branch is given", () => {
    const document = plan(manifest, {});
    expect(document.branch).toBeNull();
    expect(document.images.map((image) => [image.name, image.references, image.promotes])).toEqual(
      document.images.map((image) => [image.name, [], []]),
    );
  });

  it("gives the seed guide's tags on main, with the production references", () => {
    const document = plan(manifest, { group: "core" }, { branch: "main", sha: SHA, registry: REGISTRY });
    expect(document).toMatchObject({
      slurm: { line: "25.11", version: patch },
      flavor: { name: "ubuntu24.04", family: "debian" },
      group: "core",
      branch: "main",
      slug: "main",
      sha8: "a1b2c3d4",
      registry: REGISTRY,
    });
    expect(document.images.find((image) => image.name === "slurmctld")).toEqual({
      name: "slurmctld",
      target: "slurmctld",
      title: "Slurm Control Plane",
      group: "core",
      buildsOn: null,
      references: [
        `${REGISTRY}/slurmctld:25.11-ubuntu24.04-main-a1b2c3d4`,
        `${REGISTRY}/slurmctld:25.11-ubuntu24.04-main-latest`,
      ],
      promotes: [`${REGISTRY}/slurmctld:25.11-ubuntu24.04-latest`],
    });
  });

  it("gives branch tags and no promotion on feature/xyz", () => {
    const document = plan(manifest, { group: "extras" }, { branch: "feature/xyz", sha: SHA, registry: `${REGISTRY}/` });
    expect(document.images.map((image) => [image.name, image.buildsOn, image.references, image.promotes])).toEqual([
      ["slurmd-pyxis", "slurmd", [
        `${REGISTRY}/slurmd-pyxis:25.11-ubuntu24.04-feature-xyz-a1b2c3d4`,
        `${REGISTRY}/slurmd-pyxis:25.11-ubuntu24.04-feature-xyz-latest`,
      ], []],
      ["login-pyxis", "login", [
        `${REGISTRY}/login-pyxis:25.11-ubuntu24.04-feature-xyz-a1b2c3d4`,
        `${REGISTRY}/login-pyxis:25.11-ubuntu24.04-feature-xyz-latest`,
      ], []],
    ]);
  });

  it.each([
    [{ branch: "main", registry: REGISTRY }, "--branch needs --sha"],
    [{ branch: "main", sha: SHA }, "--branch needs --registry"],
    [{ sha: SHA, registry: REGISTRY }, "--sha and --registry need --branch"],
    [{ branch: "main", sha: "123", registry: REGISTRY }, 'invalid commit sha "123"'],
    [{ branch: "main", sha: "z".repeat(40), registry: REGISTRY }, "expected 8 to 64 hexadecimal"],
    [{ branch: "...", sha: SHA, registry: REGISTRY }, "git refuses '..'"],
    [{ branch: "_/_", sha: SHA, registry: REGISTRY }, "its GitLab slug would be empty"],
    [{ branch: "main", sha: SHA, registry: "Registry.Example.com/x" }, 'invalid registry "Registry.Example.com/x": "Registry.Example.com" is not a lowercase host name'],
    [{ branch: "main", sha: SHA, registry: "https://r.example/x" }, "lowercase registry host"],
  ])("refuses %j", (destination, message) => {
    expect(() => plan(manifest, {}, destination)).toThrow(message);
  });

  it("reports downloads whose checksum is unknown without refusing to plan", () => {
    const unknown = loadManifest({ inputs: { kubectl: { sha256: null } } });
    expect(plan(unknown, { group: "core" }).missingChecksums).toEqual(["inputs.kubectl (linux/amd64)"]);
  });
});
