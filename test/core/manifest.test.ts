import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { deepMerge, loadManifest, MANIFEST_URL, ManifestError, parseManifest, parseOverride } from "../../src/core/manifest.js";

const pinned = () => JSON.parse(readFileSync(MANIFEST_URL, "utf8"));
const broken = (edit: (manifest: any) => void) => {
  const manifest = pinned();
  edit(manifest);
  return () => parseManifest(manifest, "test manifest");
};

describe("manifest.json", () => {
  it("loads and pins Slurm 25.11 by patch release, URL and sha256", () => {
    const manifest = loadManifest();
    const slurm = manifest.slurm["25.11"];
    expect(slurm?.version).toMatch(/^25\.11\.\d+$/);
    expect(slurm?.url).toBe(`https://download.schedmd.com/slurm/slurm-${slurm?.version}.tar.bz2`);
    expect(slurm?.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("has ubuntu24.04 as the default flavor and room for debian13 in the same family", () => {
    const manifest = loadManifest();
    expect(manifest.defaults).toEqual({ slurmVersion: "25.11", flavor: "ubuntu24.04", group: "all", platforms: ["linux/amd64"] });
    expect(manifest.flavors["ubuntu24.04"]?.family).toBe("debian");
    expect(manifest.flavors["debian13"]?.family).toBe("debian");
  });

  it("pins pyxis, enroot and kubectl by version, URL and checksum (or says the checksum is unknown)", () => {
    const { inputs } = loadManifest();
    for (const name of ["pyxis", "enroot", "enrootCaps", "kubectl", "nvidiaKey"] as const) {
      const input = inputs[name];
      expect(input.url).toMatch(/^https:\/\//);
      if (input.sha256 === null) expect(input.fingerprint ?? input.checksumSource).toMatch(/^[0-9A-F]{40}$|not known/);
      expect(input.url).toContain(name === "nvidiaKey" ? "gpgkey" : input.version);
    }
  });
});

describe("a malformed manifest fails at load with the path of the bad field", () => {
  it.each([
    ["a short sha256", (m: any) => (m.slurm["25.11"].sha256 = "abc"), "slurm.25.11.sha256"],
    ["an uppercase sha256", (m: any) => (m.inputs.kubectl.sha256 = "A".repeat(64)), "inputs.kubectl.sha256"],
    ["a non-http url", (m: any) => (m.inputs.pyxis.url = "ftp://example.org/p.tgz"), "inputs.pyxis.url"],
    ["a missing input", (m: any) => delete m.inputs.enroot, "inputs.enroot"],
    ["an unknown field", (m: any) => (m.inputs.kubectl.sha = "x"), "inputs.kubectl"],
    ["a patch outside its line", (m: any) => (m.slurm["25.11"].version = "24.11.5"), "slurm.25.11.version"],
    ["a bad release line", (m: any) => (m.slurm["25"] = m.slurm["25.11"]), "slurm.25"],
    ["an unknown family", (m: any) => (m.flavors.debian13.family = "rhel"), "flavors.debian13.family"],
    ["a bad base digest", (m: any) => (m.flavors.debian13.baseDigest = "sha256:xyz"), "flavors.debian13.baseDigest"],
    ["a default flavor that does not exist", (m: any) => (m.defaults.flavor = "centos7"), "defaults.flavor"],
    ["an unknown default group", (m: any) => (m.defaults.group = "most"), "defaults.group"],
    ["an inherited default flavor (constructor)", (m: any) => (m.defaults.flavor = "constructor"), "defaults.flavor"],
    ["an inherited default flavor (toString)", (m: any) => (m.defaults.flavor = "toString"), "defaults.flavor"],
    ["an inherited default release line (__proto__)", (m: any) => (m.defaults.slurmVersion = "__proto__"), "defaults.slurmVersion"],
    ["an inherited default release line (hasOwnProperty)", (m: any) => (m.defaults.slurmVersion = "hasOwnProperty"), "defaults.slurmVersion"],
    ["a url with credentials", (m: any) => (m.inputs.kubectl.url = "https://bob:hunter2-Secr3t@mirror.example/kubectl"), "inputs.kubectl.url"],
    ["a repository url with credentials", (m: any) => (m.nvidiaToolkit.repository = "http://bob:pw@mirror.example/nvidia"), "nvidiaToolkit.repository"],
    ["a file:// url", (m: any) => (m.slurm["25.11"].url = "file:///etc/passwd"), "slurm.25.11.url"],
    ["a base image with a scheme", (m: any) => (m.flavors.debian13.baseImage = "https://docker.io/library/debian"), "flavors.debian13.baseImage"],
    ["an uppercase base image", (m: any) => (m.flavors.debian13.baseImage = "docker.io/library/Debian:trixie"), "flavors.debian13.baseImage"],
    ["a base image with a space", (m: any) => (m.flavors.debian13.baseImage = "debian: trixie"), "flavors.debian13.baseImage"],
    ["a base image with a digest", (m: any) => (m.flavors.debian13.baseImage = `debian@sha256:${"a".repeat(64)}`), "flavors.debian13.baseImage"],
  ])("%s", (_what, edit, path) => {
    const load = broken(edit);
    expect(load).toThrow(ManifestError);
    expect(load).toThrow(new RegExp(`^invalid manifest test manifest:[\\s\\S]*\\n  ${path.replace(/\./g, "\\.")}: `));
  });
});

describe("a site manifest laid over the pinned one", () => {
  it("changes only what it names", () => {
    const manifest = loadManifest({ inputs: { kubectl: { url: "https://mirror.example/kubectl" } } });
    expect(manifest.inputs.kubectl.url).toBe("https://mirror.example/kubectl");
    expect(manifest.inputs.kubectl.sha256).toBe(pinned().inputs.kubectl.sha256);
    expect(manifest.inputs.pyxis).toEqual(pinned().inputs.pyxis);
  });

  it("can add a release line and a flavor", () => {
    const manifest = loadManifest({
      slurm: { "24.11": { version: "24.11.5", url: "http://127.0.0.1:1/s.tar.gz", sha256: "0".repeat(64) } },
    });
    expect(Object.keys(manifest.slurm)).toEqual(["25.11", "26.05", "24.11"]);
  });

  it("is validated after merging, naming the site manifest", () => {
    expect(() => loadManifest({ inputs: { kubectl: { sha256: "nope" } } })).toThrow(
      /site manifest laid over it:\n  inputs\.kubectl\.sha256: must be 64 lowercase hex/,
    );
  });

  it("must be JSON", () => {
    expect(() => parseOverride("{nope", "the --manifest file")).toThrow(/the --manifest file is not valid JSON/);
  });

  it("never echoes a credential from a mirror URL", () => {
    const load = () => loadManifest({ inputs: { kubectl: { url: "https://bob:hunter2-Secr3t@mirror.example/kubectl" } } });
    expect(load).toThrow(/inputs\.kubectl\.url: must not hold credentials/);
    expect(() => load()).not.toThrow(/hunter2/);
  });

  it.each(["__proto__", "constructor", "prototype"])("refuses a %s key instead of reaching a prototype", (key) => {
    const override = JSON.parse(`{"flavors": {"${key}": {"family": "debian"}}}`);
    expect(() => loadManifest(override)).toThrow(`site manifest: key "flavors.${key}" is not allowed`);
    expect(({} as Record<string, unknown>).family).toBeUndefined();
  });

  it("merges objects key by key and replaces anything else", () => {
    expect(deepMerge({ a: { b: 1, c: [1] } }, { a: { c: [2] }, d: null })).toEqual({ a: { b: 1, c: [2] }, d: null });
  });
});
