/**
 * The STAND-IN inputs are real artefacts: packages dpkg accepts, a tarball
 * with pyxis's layout, a repository whose Release verifies with its key, and
 * they are reproducible so that a second harness run keeps the build cache.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeStandIns, standInOverride } from "../standins.js";

const options = { pyxisVersion: "0.24.0", enrootVersion: "4.1.2", kubectlVersion: "1.35.0", nvidiaToolkitVersion: "1.18.0-1" };
const root = mkdtempSync(join(tmpdir(), "standins-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8", timeout: 60_000 });

describe("makeStandIns", () => {
  it("makes real, labelled, reproducible stand-ins and reuses them", async () => {
    const a = await makeStandIns(join(root, "a"), options);
    const b = await makeStandIns(join(root, "b"), options);
    for (const key of ["pyxis", "enroot", "enrootCaps", "kubectl"] as const) {
      expect(a[key].file).toContain("STAND-IN");
      expect(b[key].sha256).toBe(a[key].sha256);
    }
    const again = await makeStandIns(join(root, "a"), options);
    expect(again.nvidiaKey.sha256).toBe(a.nvidiaKey.sha256);
    expect(again.nvidiaKey.fingerprint).toMatch(/^[0-9A-F]{40}$/);

    // pyxis: one top dir pyxis-<ver>/ with pyxis's build interface
    const listing = sh("tar", ["-tzf", a.pyxis.path]).split("\n").filter(Boolean);
    expect(new Set(listing.map((p) => p.split("/")[0]))).toEqual(new Set(["pyxis-0.24.0"]));
    expect(listing).toEqual(expect.arrayContaining(["pyxis-0.24.0/Makefile", "pyxis-0.24.0/debian/control", "pyxis-0.24.0/spank_pyxis.c"]));
    const makefile = sh("tar", ["-xzOf", a.pyxis.path, "pyxis-0.24.0/Makefile"]);
    expect(makefile).toMatch(/^orig: /m);
    expect(makefile).toMatch(/^deb: /m);
    expect(makefile).toContain("PYXIS_VER ?= 0.24.0");

    // enroot packages
    expect(sh("dpkg-deb", ["--field", a.enroot.path, "Package", "Version"])).toBe("Package: enroot\nVersion: 4.1.2-1\n");
    expect(sh("dpkg-deb", ["--field", a.enrootCaps.path, "Depends"])).toContain("enroot (= 4.1.2-1)");
    expect(sh("dpkg-deb", ["-c", a.enroot.path])).toContain("./usr/bin/enroot");

    // kubectl answers version --client
    expect(sh(a.kubectl.path, ["version", "--client"])).toContain("Client Version: v1.35.0");
  });

  it("signs the flat repository with the key it returns", async () => {
    const s = await makeStandIns(join(root, "a"), options);
    const keyring = join(root, "key.gpg");
    sh("gpg", ["--batch", "--yes", "--dearmor", "--output", keyring, s.nvidiaKey.path]);
    const verified = execFileSync("gpgv", ["--keyring", keyring, join(s.nvidiaRepo.path, "Release.gpg"), join(s.nvidiaRepo.path, "Release")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(verified).toBeDefined();
    const packages = readFileSync(join(s.nvidiaRepo.path, "Packages"), "utf8");
    expect(packages).toMatch(/^Package: nvidia-container-toolkit\nVersion: 1\.18\.0-1$/m);
    expect(packages).toMatch(/^Package: nvidia-container-toolkit-base\nVersion: 1\.18\.0-1$/m);
    const override = standInOverride(s, (file) => `http://127.0.0.1:1/${file}`);
    expect(override.nvidiaToolkit.repository).toBe("http://127.0.0.1:1/nvidia-repo.STAND-IN");
    expect(override.inputs.nvidiaKey.fingerprint).toBe(s.nvidiaKey.fingerprint);
  });
});
