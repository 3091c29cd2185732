import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { IMAGE_NAMES } from "../../src/core/catalog.js";
import { smokeChecks, smokeScript } from "../../src/build/smoke.js";
import { gpuPluginsByArch } from "../../src/core/gpu.js";
import { loadManifest } from "../../src/core/manifest.js";

/** debian13's GPU plugins by architecture, from the manifest. */
const DEBIAN_GPU = gpuPluginsByArch(loadManifest().flavors.debian13!);

const sh = (args: string[], input?: string) => spawnSync("sh", args, { input, encoding: "utf8", timeout: 120_000 });

describe("smokeScript", () => {
  it.each(IMAGE_NAMES)("%s: is valid POSIX sh and names its image and version", (image) => {
    const script = smokeScript(image, "24.11.5", DEBIAN_GPU);
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
    // Only the images that run slurmd load gpu/* plugins.
    for (const image of IMAGE_NAMES) {
      expect(smokeChecks(image).includes("gpu-plugins"), image).toBe(image === "slurmd" || image === "slurmd-pyxis");
    }
  });

  it("gpu-plugins: on this host (no Slurm), names each missing plugin and each library slurmd could not load", () => {
    const result = sh(["-c", smokeScript("slurmd", "24.11.5", { amd64: ["nvml", "rsmi", "oneapi"], arm64: ["nvml", "rsmi"] })]);
    const arch = spawnSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).stdout.trim();
    expect(result.stdout).toMatch(/^FAIL gpu-plugins: the gpu\/nvml plugin is missing$/m);
    expect(result.stdout).toMatch(/^FAIL gpu-plugins: the gpu\/rsmi plugin is missing$/m);
    expect(result.stdout).toMatch(/^FAIL gpu-plugins: librocm_smi64\.so is not in the linker cache: slurmd cannot load gpu\/rsmi$/m);
    // NVML is the node driver's: its absence here is what the check wants.
    expect(result.stdout).not.toMatch(/^FAIL gpu-plugins: libnvidia-ml/m);
    expect(/^FAIL gpu-plugins: the gpu\/oneapi plugin is missing$/m.test(result.stdout)).toBe(arch === "amd64");
    const none = sh(["-c", smokeScript("slurmd", "24.11.5", {})]);
    expect(none.stdout).not.toMatch(/^FAIL gpu-plugins/m);
  });

  it("rejects an unknown image and a version that is not a patch release", () => {
    expect(() => smokeScript("slurmctl", "24.11.5", {})).toThrow(/unknown image "slurmctl"/);
    expect(() => smokeScript("slurmctld", "24.11", {})).toThrow(/patch release/);
    expect(() => smokeScript("slurmctld", "24.11.5; rm -rf /", {})).toThrow(/patch release/);
  });

  it("fails, one line per failed check, where the image's software is absent (this host)", () => {
    const result = sh(["-c", smokeScript("slurmctld", "24.11.5", {})]);
    expect(result.status).not.toBe(0);
    expect(result.stdout).toMatch(/^FAIL version:slurmctld: /m);
    expect(result.stdout).toMatch(/^FAIL packages: package slurm-smd-slurmctld is not installed$/m);
    expect(result.stdout).toMatch(/^smoke slurmctld: \d+ of \d+ checks failed$/m);
    // This host's uname -m matches its dpkg architecture; it has no Slurm ELF files to check.
    expect(result.stdout).not.toMatch(/^FAIL architecture: uname/m);
    expect(result.stdout).toMatch(/^FAIL architecture: no ELF files found in the Slurm packages$/m);
  });
});
