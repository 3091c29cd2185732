/**
 * The harness's switches for real pyxis and enroot (real-inputs.ts): what they
 * take and what they refuse, by name, before any build. The tarball and .debs
 * here are made by the test (tar, dpkg-deb) only to be read back.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { run, sha256File } from "./harness.js";
import { describeInputs, realInputsFrom } from "./real-inputs.js";

const dir = mkdtempSync(join(tmpdir(), "slinky-real-inputs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function tarball(name: string, ...tops: string[]): Promise<string> {
  for (const top of tops) {
    mkdirSync(join(dir, "src", name, top), { recursive: true });
    writeFileSync(join(dir, "src", name, top, "Makefile"), "all:\n");
  }
  const r = await run("tar", ["-czf", join(dir, name), "-C", join(dir, "src", name), ...tops], { timeoutMs: 30_000 });
  expect(r.code, r.stderr).toBe(0);
  return join(dir, name);
}

async function deb(into: string, pkg: string, version: string, arch = "amd64"): Promise<string> {
  const root = join(dir, "build", `${into}-${pkg}-${version}-${arch}`);
  mkdirSync(join(root, "DEBIAN"), { recursive: true });
  writeFileSync(join(root, "DEBIAN", "control"), `Package: ${pkg}\nVersion: ${version}\nArchitecture: ${arch}\nMaintainer: test <test@invalid>\nDescription: test package\n`);
  mkdirSync(join(dir, into), { recursive: true });
  const out = join(dir, into, `${pkg}_${version}_${arch}.deb`);
  const r = await run("dpkg-deb", ["--build", "--root-owner-group", root, out], { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  return out;
}

describe("real pyxis and enroot for the harness", () => {
  it("without the switches every input is a STAND-IN", () => {
    expect(realInputsFrom({})).toEqual({});
    expect(describeInputs({})).toEqual({ pyxis: "STAND-IN", enroot: "STAND-IN" });
  });

  it("SLINKY_PYXIS_TARBALL: the version from its one pyxis-X.Y.Z/ directory, the sha256 from the file", async () => {
    const good = await tarball("pyxis-0.24.0.tar.gz", "pyxis-0.24.0");
    const real = realInputsFrom({ SLINKY_PYXIS_TARBALL: good });
    expect(real.pyxis).toMatchObject({ path: good, file: "pyxis-0.24.0.tar.gz", version: "0.24.0" });
    expect(real.pyxis?.sha256).toBe(await sha256File(good));
    expect(realInputsFrom({ SLINKY_PYXIS_TARBALL: good, SLINKY_PYXIS_VERSION: "0.24.0" }).pyxis?.version).toBe("0.24.0");
    expect(describeInputs(real).pyxis).toMatch(/^real 0\.24\.0 \(pyxis-0\.24\.0\.tar\.gz, sha256 [0-9a-f]{64}\)$/);
  });

  it("refuses a pyxis tarball that disagrees with SLINKY_PYXIS_VERSION, a missing or unreadable one, and a version alone", async () => {
    const good = await tarball("pyxis-b.tar.gz", "pyxis-0.24.0");
    expect(() => realInputsFrom({ SLINKY_PYXIS_TARBALL: good, SLINKY_PYXIS_VERSION: "0.23.0" })).toThrow(/SLINKY_PYXIS_VERSION is 0\.23\.0 but pyxis-b\.tar\.gz holds pyxis-0\.24\.0\//);
    expect(() => realInputsFrom({ SLINKY_PYXIS_VERSION: "0.24.0" })).toThrow(/SLINKY_PYXIS_VERSION needs SLINKY_PYXIS_TARBALL/);
    expect(() => realInputsFrom({ SLINKY_PYXIS_TARBALL: join(dir, "absent.tar.gz") })).toThrow(/SLINKY_PYXIS_TARBALL: no such file/);
    const two = await tarball("two.tar.gz", "pyxis-0.24.0", "other");
    expect(() => realInputsFrom({ SLINKY_PYXIS_TARBALL: two })).toThrow(/must hold one top directory pyxis-X\.Y\.Z\//);
    writeFileSync(join(dir, "junk.tar.gz"), "not a tar archive\n");
    expect(() => realInputsFrom({ SLINKY_PYXIS_TARBALL: join(dir, "junk.tar.gz") })).toThrow(/is not a readable tar archive/);
  });

  it("SLINKY_ENROOT_DEBS: enroot and enroot+caps for amd64, one version, each with its own sha256", async () => {
    const enroot = await deb("good", "enroot", "4.2.1-1");
    const caps = await deb("good", "enroot+caps", "4.2.1-1");
    const real = realInputsFrom({ SLINKY_ENROOT_DEBS: join(dir, "good") });
    expect(real.enroot?.enroot).toMatchObject({ file: "enroot_4.2.1-1_amd64.deb", version: "4.2.1", sha256: await sha256File(enroot) });
    expect(real.enroot?.enrootCaps).toMatchObject({ file: "enroot+caps_4.2.1-1_amd64.deb", version: "4.2.1", sha256: await sha256File(caps) });
  });

  it("refuses an enroot set that lacks a package, mixes versions, holds another architecture or package, or is no directory", async () => {
    await deb("nocaps", "enroot", "4.2.1-1");
    expect(() => realInputsFrom({ SLINKY_ENROOT_DEBS: join(dir, "nocaps") })).toThrow(/must hold enroot's and enroot\+caps's amd64 \.debs; found enroot_4\.2\.1-1_amd64\.deb/);
    await deb("mixed", "enroot", "4.2.1-1");
    await deb("mixed", "enroot+caps", "4.1.2-1");
    expect(() => realInputsFrom({ SLINKY_ENROOT_DEBS: join(dir, "mixed") })).toThrow(/enroot is 4\.2\.1 but enroot\+caps is 4\.1\.2/);
    await deb("arm", "enroot", "4.2.1-1", "arm64");
    expect(() => realInputsFrom({ SLINKY_ENROOT_DEBS: join(dir, "arm") })).toThrow(/is for arm64, not amd64/);
    await deb("other", "enroot-hooks", "4.2.1-1");
    expect(() => realInputsFrom({ SLINKY_ENROOT_DEBS: join(dir, "other") })).toThrow(/is package enroot-hooks, not enroot or enroot\+caps/);
    expect(() => realInputsFrom({ SLINKY_ENROOT_DEBS: join(dir, "absent") })).toThrow(/SLINKY_ENROOT_DEBS: no such directory/);
  });
});
