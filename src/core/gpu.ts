/**
 * Slurm's GPU plugins that need a vendor library (gpu/nvml, gpu/rsmi,
 * gpu/oneapi): which a flavor builds for a platform, the packages that takes,
 * and the library slurmd loads for each. The packages are manifest data
 * (flavors.<name>.gpu); the library names are Slurm's own.
 */
import { type Flavor, GPU_PLUGIN_NAMES, type GpuPluginName } from "./manifest.js";
import { archOf, type Architecture, PLATFORM_NAMES, type PlatformName } from "./platform.js";

/**
 * The library slurmd dlopens before it loads each plugin (interfaces/gpu.c in
 * Slurm's sources): unversioned names but NVML's, which the node's driver
 * provides (the NVIDIA container toolkit puts it in the container).
 */
export const GPU_PLUGIN_LIBRARY: Readonly<Record<GpuPluginName, string>> = {
  nvml: "libnvidia-ml.so.1",
  rsmi: "librocm_smi64.so",
  oneapi: "libze_loader.so",
};

/** Plugins whose library comes from the node at run time, never from the image. */
export const NODE_PROVIDED: ReadonlySet<GpuPluginName> = new Set(["nvml"]);

/** The flavor's GPU plugins built for a platform, in a fixed order. */
export function gpuPluginsFor(flavor: Flavor, platform: PlatformName): GpuPluginName[] {
  const plugins = flavor.gpu?.plugins ?? {};
  return GPU_PLUGIN_NAMES.filter((name) => {
    const plugin = plugins[name];
    return plugin !== undefined && (plugin.platforms ?? flavor.platforms).includes(platform);
  });
}

/** The GPU plugins each architecture's images ship. */
export type GpuPluginsByArch = Partial<Record<Architecture, readonly GpuPluginName[]>>;

/** The plugins by architecture, for every platform the flavor builds. */
export function gpuPluginsByArch(flavor: Flavor): GpuPluginsByArch {
  return Object.fromEntries(
    PLATFORM_NAMES.filter((platform) => flavor.platforms.includes(platform)).map((platform) => [archOf(platform), gpuPluginsFor(flavor, platform)]),
  );
}

/** The packages of `plugins` for one side, each once. */
const packagesOf = (flavor: Flavor, plugins: readonly GpuPluginName[], side: "build" | "node") => [
  ...new Set(plugins.flatMap((name) => flavor.gpu?.plugins[name]?.[side] ?? [])),
];

/** The packages one side needs for a platform's plugins, each once: "build" (the compile) or "node" (the slurmd images). */
export function gpuPackages(flavor: Flavor, platform: PlatformName, side: "build" | "node"): string[] {
  return packagesOf(flavor, gpuPluginsFor(flavor, platform), side);
}

/** The build arguments of the GPU plugins (space-separated lists; empty when the flavor builds none). */
export function gpuBuildArgs(flavor: Flavor, platform: PlatformName): Record<string, string> {
  const plugins = gpuPluginsFor(flavor, platform);
  return {
    GPU_PLUGINS: plugins.join(" "),
    GPU_APT_COMPONENTS: (flavor.gpu?.buildComponents ?? []).join(" "),
    GPU_BUILD_PACKAGES: packagesOf(flavor, plugins, "build").join(" "),
    GPU_NODE_PACKAGES: packagesOf(flavor, plugins, "node").join(" "),
    GPU_NODE_LIBRARIES: plugins
      .filter((name) => !NODE_PROVIDED.has(name))
      .map((name) => GPU_PLUGIN_LIBRARY[name])
      .join(" "),
  };
}
