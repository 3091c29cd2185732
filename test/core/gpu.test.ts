import { describe, expect, it } from "vitest";
import { GPU_PLUGIN_LIBRARY, gpuBuildArgs, gpuPackages, gpuPluginsByArch, gpuPluginsFor, NODE_PROVIDED } from "../../src/core/gpu.js";
import { loadManifest } from "../../src/core/manifest.js";
import { buildArgs, resolve } from "../../src/build/plan.js";

describe("the GPU plugins a flavor builds (manifest data)", () => {
  const manifest = loadManifest();
  const debian = manifest.flavors.debian13!;

  it("debian13: nvml, rsmi and oneapi on amd64; no oneapi on arm64 (trixie's level-zero is amd64 only)", () => {
    expect(gpuPluginsFor(debian, "linux/amd64")).toEqual(["nvml", "rsmi", "oneapi"]);
    expect(gpuPluginsFor(debian, "linux/arm64")).toEqual(["nvml", "rsmi"]);
    expect(gpuPluginsByArch(debian)).toEqual({ amd64: ["nvml", "rsmi", "oneapi"], arm64: ["nvml", "rsmi"] });
  });

  it("the Ubuntu flavors build none until their archive's packages are checked (docs/gpu.md)", () => {
    for (const name of ["ubuntu24.04", "ubuntu26.04"]) {
      const flavor = manifest.flavors[name]!;
      expect(gpuPluginsByArch(flavor)).toEqual({ amd64: [], arm64: [] });
      expect(gpuBuildArgs(flavor, "linux/amd64")).toEqual({ GPU_PLUGINS: "", GPU_APT_COMPONENTS: "", GPU_BUILD_PACKAGES: "", GPU_NODE_PACKAGES: "", GPU_NODE_LIBRARIES: "" });
    }
  });

  it("build arguments: the compile's packages and components, the node's runtime libraries and the names slurmd dlopens", () => {
    expect(gpuBuildArgs(debian, "linux/amd64")).toEqual({
      GPU_PLUGINS: "nvml rsmi oneapi",
      GPU_APT_COMPONENTS: "contrib non-free",
      GPU_BUILD_PACKAGES: "libnvidia-ml-dev librocm-smi-dev libze-dev",
      GPU_NODE_PACKAGES: "librocm-smi64-1 libze1",
      GPU_NODE_LIBRARIES: "librocm_smi64.so libze_loader.so",
    });
    expect(gpuBuildArgs(debian, "linux/arm64")).toMatchObject({
      GPU_PLUGINS: "nvml rsmi",
      GPU_BUILD_PACKAGES: "libnvidia-ml-dev librocm-smi-dev",
      GPU_NODE_PACKAGES: "librocm-smi64-1",
      GPU_NODE_LIBRARIES: "librocm_smi64.so",
    });
    // NVML is the node driver's: never installed in the image, never linked there.
    expect(NODE_PROVIDED.has("nvml")).toBe(true);
    expect(gpuPackages(debian, "linux/amd64", "node").some((name) => name.includes("nvidia"))).toBe(false);
    expect(gpuBuildArgs(debian, "linux/amd64").GPU_NODE_LIBRARIES).not.toContain(GPU_PLUGIN_LIBRARY.nvml);
  });

  it("reach the Dockerfiles through the plan's build arguments", () => {
    const resolved = resolve(manifest, { flavor: "debian13", group: "core" });
    expect(buildArgs(manifest, resolved, "linux/amd64")).toMatchObject(gpuBuildArgs(debian, "linux/amd64"));
  });

  it("a site manifest can build a plugin nowhere, or add one to a flavor", () => {
    const off = loadManifest({ flavors: { debian13: { gpu: { plugins: { oneapi: { platforms: [] } } } } } });
    expect(gpuPluginsFor(off.flavors.debian13!, "linux/amd64")).toEqual(["nvml", "rsmi"]);
    const on = loadManifest({ flavors: { "ubuntu24.04": { gpu: { plugins: { rsmi: { build: ["librocm-smi-dev"], node: ["librocm-smi64-1"] } } } } } });
    expect(gpuPluginsFor(on.flavors["ubuntu24.04"]!, "linux/arm64")).toEqual(["rsmi"]);
  });

  it("refuses an unknown plugin, a package that is no Debian name, a bad component and an unknown platform, naming the field", () => {
    const bad = (gpu: unknown) => () => loadManifest({ flavors: { debian13: { gpu } } });
    expect(bad({ plugins: { cuda: { build: ["x"] } } })).toThrow(/flavors\.debian13\.gpu\.plugins/);
    expect(bad({ plugins: { nvml: { build: ["libnvidia ml"] } } })).toThrow(/flavors\.debian13\.gpu\.plugins\.nvml\.build\.0: must be a Debian package name/);
    expect(bad({ plugins: { nvml: { build: [] } } })).toThrow(/flavors\.debian13\.gpu\.plugins\.nvml\.build/);
    expect(bad({ buildComponents: ["non free"] })).toThrow(/flavors\.debian13\.gpu\.buildComponents\.0: must be an apt component/);
    expect(bad({ plugins: { nvml: { build: ["libnvidia-ml-dev"], platforms: ["linux/riscv64"] } } })).toThrow(/flavors\.debian13\.gpu\.plugins\.nvml\.platforms\.0/);
  });
});
