import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { IMAGE_NAMES } from "../../src/core/catalog.js";
import { smokeChecks, smokeScript } from "../../src/build/smoke.js";

const sh = (args: string[], input?: string) => spawnSync("sh", args, { input, encoding: "utf8", timeout: 120_000 });

describe("smokeScript", () => {
  it.each(IMAGE_NAMES)("%s: is valid POSIX sh and names its image and version", (image) => {
    const script = smokeScript(image, "24.11.5");
    const result = sh(["-n"], script);
    expect(result.status, result.stderr).toBe(0);
    expect(script).toContain(`smoke ${image}:`);
    expect(script).toContain("24.11.5");
  });

  it("has the common checks for every image and the image-specific ones where they belong", () => {
    for (const image of IMAGE_NAMES) {
      expect(smokeChecks(image)).toEqual(
        expect.arrayContaining(["packages", "slurm-user", "no-ubuntu-user", "entrypoint", "shared-libraries", "architecture"]),
      );
    }
    expect(smokeChecks("slurmctld")).toContain("version:slurmctld");
    expect(smokeChecks("slurmd")).toContain("version:slurmd");
    expect(smokeChecks("slurmdbd")).toContain("version:slurmdbd");
    expect(smokeChecks("slurmrestd")).toContain("version:slurmrestd");
    expect(smokeChecks("sackd")).toContain("kubectl");
    expect(smokeChecks("login")).toEqual(expect.arrayContaining(["kubectl", "sshd"]));
    expect(smokeChecks("slurmd-pyxis")).toEqual(expect.arrayContaining(["pyxis-plugstack", "enroot", "nsswitch-slurm-first"]));
    expect(smokeChecks("login-pyxis")).toEqual(expect.arrayContaining(["pyxis-plugstack", "enroot", "kubectl"]));
    expect(smokeChecks("slurmctld")).not.toContain("pyxis-plugstack");
    for (const image of ["slurmctld", "slurmd", "sackd", "login", "slurmd-pyxis", "login-pyxis"]) {
      expect(smokeChecks(image)).toContain("mpi-pmix");
    }
    expect(smokeChecks("slurmdbd")).not.toContain("mpi-pmix");
  });

  it("rejects an unknown image and a version that is not a patch release", () => {
    expect(() => smokeScript("slurmctl", "24.11.5")).toThrow(/unknown image "slurmctl"/);
    expect(() => smokeScript("slurmctld", "24.11")).toThrow(/patch release/);
    expect(() => smokeScript("slurmctld", "24.11.5; rm -rf /")).toThrow(/patch release/);
  });

  it("fails, one line per failed check, where the image's software is absent (this host)", () => {
    const result = sh(["-c", smokeScript("slurmctld", "24.11.5")]);
    expect(result.status).not.toBe(0);
    expect(result.stdout).toMatch(/^FAIL version:slurmctld: /m);
    expect(result.stdout).toMatch(/^FAIL packages: package slurm-smd-slurmctld is not installed$/m);
    expect(result.stdout).toMatch(/^smoke slurmctld: \d+ of \d+ checks failed$/m);
    // This host's uname -m matches its dpkg architecture; it has no Slurm ELF files to check.
    expect(result.stdout).not.toMatch(/^FAIL architecture: uname/m);
    expect(result.stdout).toMatch(/^FAIL architecture: no ELF files found in the Slurm packages$/m);
  });
});
