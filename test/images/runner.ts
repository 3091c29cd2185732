/**
 * The build runner: `docker build` of dockerfiles/<family>/Dockerfile per target,
 * with build arguments and labels taken only from src/ (manifest, plan), exactly
 * as `build` feeds them to Dagger. The harness only lays its stand-ins over the
 * manifest, as a site manifest would.
 */
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { besideCompileTargets, COMPILE_DEPS_TARGET, type ImageSpec, PACKAGES_TARGET } from "../../src/core/catalog.js";
import { deepMerge, loadManifest, type Manifest } from "../../src/core/manifest.js";
import { buildArgs, imageLabels, type Provenance, type Resolved, requireChecksums, resolve } from "../../src/build/plan.js";
import { archOf, DEFAULT_PLATFORM, type PlatformName } from "../../src/core/platform.js";
import { docker, dockerOk, IMAGE_PREFIX, REPO, run, SLURM_SOURCE } from "./harness.js";

export const FLAVOR = "debian13";

/** A pinned download served by the harness: what a site manifest would say. */
export interface ServedDownload {
  version: string;
  url: string;
  sha256: string;
}

export interface HarnessSources {
  /** The local base image and its image id. */
  base: { name: string; id: string };
  /** The Slurm source stand-in, served from loopback. */
  slurm: ServedDownload;
  /**
   * The stand-ins' part of the site manifest (inputs.*, nvidiaToolkit), from
   * standins.ts's standInOverride with the loopback URLs.
   */
  standIns: unknown;
}

/**
 * The site manifest the harness lays over manifest.json: a "24.11" Slurm line
 * (the stand-in source is 24.11.5, so images say so), the debian13 flavor on the
 * local base image, every other input pointed at its loopback stand-in.
 */
export function siteOverride(sources: HarnessSources, baseDigest: string | null): unknown {
  return deepMerge(sources.standIns, {
    slurm: {
      [SLURM_SOURCE.line]: {
        ...sources.slurm,
        checksumSource: "Debian trixie slurm-wlm 24.11.5 orig tarball (SchedMD tag archive slurm-24-11-5-1)",
      },
    },
    flavors: {
      [FLAVOR]: {
        baseImage: sources.base.name,
        baseDigest,
        digestSource: "image id of the debootstrapped base imported by the harness",
      },
    },
  });
}

export interface BuildPlan {
  manifest: Manifest;
  resolved: Resolved;
  /** Build arguments, from plan.buildArgs. */
  args: Record<string, string>;
  /** Labels per image, from plan.imageLabels. */
  labels: (image: ImageSpec) => Record<string, string>;
  /** Local reference of an image, e.g. slinky-test/slurmd:24.11-debian13. */
  ref: (image: ImageSpec) => string;
  /** dockerfiles/<family>/Dockerfile: the images. */
  dockerfile: string;
  /** dockerfiles/<family>/Dockerfile.packages: the compiled packages. */
  packagesDockerfile: string;
  /** dockerfiles/<family>: the recipe, the packages build's context. */
  recipe: string;
  /** The images' context: a copy of the recipe with packages/ composed into it (as src/build/build.engine.ts does). */
  context: string;
  /** The platform built; `docker build --platform` when it is not linux/amd64. */
  platform: PlatformName;
}

export interface PlanOptions {
  /** Default linux/amd64. */
  platform?: PlatformName;
  /**
   * The build machine's base image (BUILD_BASE_IMAGE), where the local base image
   * is another platform's: docker 20.10's image store holds one platform per name.
   */
  buildBase?: string;
}

/** HEAD's commit and commit time, so labels (and so image ids) do not change between runs. */
export async function provenance(): Promise<Provenance> {
  const result = await run("git", ["log", "-1", "--format=%H %cI"], { timeoutMs: 10_000 });
  const [revision, created] = result.code === 0 ? result.stdout.trim().split(" ") : [];
  return revision && created ? { revision, created } : {};
}

/**
 * Resolves the debian13 flavor, group "all", with the harness's site manifest.
 * The base image is labelled with its image id as base.digest. BuildKit cannot
 * resolve "name@sha256:<image id>" for an imported image (it has no registry
 * digest), so the build arguments come from the same manifest without that pin.
 */
export function buildPlan(sources: HarnessSources, prov: Provenance, options: PlanOptions = {}): BuildPlan {
  const platform = options.platform ?? DEFAULT_PLATFORM;
  const selection = { slurmVersion: SLURM_SOURCE.line, flavor: FLAVOR, group: "all", platforms: platform };
  const pinned = loadManifest(siteOverride(sources, sources.base.id));
  const unpinned = loadManifest(siteOverride(sources, null));
  const resolvedPinned = resolve(pinned, selection);
  const resolved = resolve(unpinned, selection);
  requireChecksums(unpinned, resolved);
  const family = resolved.flavor.family;
  const native = platform === DEFAULT_PLATFORM;
  return {
    manifest: unpinned,
    resolved,
    args: { ...buildArgs(unpinned, resolved, platform), ...(options.buildBase ? { BUILD_BASE_IMAGE: options.buildBase } : {}) },
    labels: (image) => imageLabels(pinned, resolvedPinned, image, prov),
    ref: (image) => `${IMAGE_PREFIX}/${image.name}:${resolved.line}-${resolved.flavorName}${native ? "" : `-${archOf(platform)}`}`,
    dockerfile: join(REPO, "dockerfiles", family, "Dockerfile"),
    packagesDockerfile: join(REPO, "dockerfiles", family, "Dockerfile.packages"),
    recipe: join(REPO, "dockerfiles", family),
    context: join(REPO, "out", "context", native ? family : `${family}-${archOf(platform)}`),
    platform,
  };
}

/** `--platform P` for a platform other than linux/amd64 (the amd64 harness's commands stay as they were). */
const platformFlag = (plan: BuildPlan) => (plan.platform === DEFAULT_PLATFORM ? [] : ["--platform", plan.platform]);

/** `docker build` arguments of one target of one of the recipe's Dockerfiles, before its output and context. */
function targetArgs(plan: BuildPlan, dockerfile: string, target: string): string[] {
  const args = ["build", "--network", "host", "--progress", "plain", ...platformFlag(plan), "-f", dockerfile, "--target", target];
  for (const [key, value] of Object.entries(plan.args)) args.push("--build-arg", `${key}=${value}`);
  return args;
}

/** The exact `docker build` arguments for one image. */
export function dockerBuildArgs(plan: BuildPlan, image: ImageSpec, extraLabels: Record<string, string> = {}): string[] {
  const args = targetArgs(plan, plan.dockerfile, image.target);
  for (const [key, value] of Object.entries({ ...plan.labels(image), ...extraLabels })) args.push("--label", `${key}=${value}`);
  args.push("-t", plan.ref(image), plan.context);
  return args;
}

/**
 * The images' build context: a fresh copy of the recipe (dockerfiles/<family>)
 * with an empty packages/ directory that the packages fill. BuildKit keys on
 * content, not paths, so the copy's place does not matter to the cache.
 */
export function prepareContext(plan: BuildPlan): string {
  rmSync(plan.context, { recursive: true, force: true });
  mkdirSync(join(plan.context, ".."), { recursive: true });
  cpSync(plan.recipe, plan.context, { recursive: true });
  rmSync(join(plan.context, "packages"), { recursive: true, force: true });
  return join(plan.context, "packages");
}

/** `docker build` arguments of the packages target, written out as files into `dest` (or tagged, with `tag`). */
export function packagesBuildArgs(plan: BuildPlan, output: { dest: string } | { tag: string; labels?: Record<string, string> }): string[] {
  const args = targetArgs(plan, plan.packagesDockerfile, PACKAGES_TARGET);
  if ("dest" in output) args.push("--output", `type=local,dest=${output.dest}`);
  else {
    for (const [key, value] of Object.entries(output.labels ?? {})) args.push("--label", `${key}=${value}`);
    args.push("-t", output.tag);
  }
  args.push(plan.recipe);
  return args;
}

/** Builds the packages into the images' context (packages/slurm, packages/pyxis). */
export async function buildPackages(plan: BuildPlan, dest: string, logFile: string, timeoutMs: number, onOutput?: (text: string) => void): Promise<number> {
  const result = await docker(packagesBuildArgs(plan, { dest }), { timeoutMs, logFile, ...(onOutput ? { onOutput } : {}) });
  if (result.code !== 0) {
    throw new Error(`build of the packages failed (exit ${result.code}); log ${logFile}:\n${result.stderr.slice(-6000)}`);
  }
  return result.seconds;
}

/** Builds one target of one of the recipe's Dockerfiles, with no output: the engine's cache keeps it. */
async function buildTarget(plan: BuildPlan, dockerfile: string, target: string, logFile: string, timeoutMs: number): Promise<number> {
  const result = await docker([...targetArgs(plan, dockerfile, target), plan.recipe], { timeoutMs, logFile });
  if (result.code !== 0) {
    throw new Error(`build of ${target} failed (exit ${result.code}); log ${logFile}:\n${result.stderr.slice(-6000)}`);
  }
  return result.seconds;
}

/** Builds one OS-layer target (its cache is what the images then reuse); no tag. */
export function buildOsTarget(plan: BuildPlan, target: string, logFile: string, timeoutMs: number): Promise<number> {
  return buildTarget(plan, plan.dockerfile, target, logFile, timeoutMs);
}

/**
 * The cold path of every build: the packages, and meanwhile the OS layers
 * (which do not wait for the compile); resolves when both are done. As the
 * module does (src/build/build.engine.ts readyPackages), the OS layers start
 * once the compile can: BuildKit runs the compile's stages once for both builds.
 */
export async function buildPackagesAndOs(
  plan: BuildPlan,
  logDir: string,
  timeoutMs: number,
  /** Sees the package set's build output as it arrives. */
  onPackagesOutput?: (text: string) => void,
): Promise<{ packagesSeconds: number; osSeconds: number }> {
  const dest = prepareContext(plan);
  const started = Date.now();
  const os = (async () => {
    // The stage of Dockerfile.packages the compile starts from.
    await buildTarget(plan, plan.packagesDockerfile, COMPILE_DEPS_TARGET, join(logDir, `${COMPILE_DEPS_TARGET}.log`), timeoutMs);
    for (const target of besideCompileTargets(plan.resolved.images)) await buildOsTarget(plan, target, join(logDir, `${target}.log`), timeoutMs);
    return (Date.now() - started) / 1000;
  })();
  const [packagesSeconds, osSeconds] = await Promise.all([buildPackages(plan, dest, join(logDir, "packages.log"), timeoutMs, onPackagesOutput), os]);
  return { packagesSeconds, osSeconds };
}

export interface Built {
  seconds: number;
  id: string;
}

/** Builds one image; throws with the log's tail on failure. */
export async function buildImage(
  plan: BuildPlan,
  image: ImageSpec,
  logFile: string,
  timeoutMs: number,
  extraLabels: Record<string, string> = {},
): Promise<Built> {
  const result = await docker(dockerBuildArgs(plan, image, extraLabels), { timeoutMs, logFile });
  if (result.code !== 0) {
    throw new Error(`build of ${image.name} failed (exit ${result.code}); log ${logFile}:\n${result.stderr.slice(-6000)}`);
  }
  const id = (await dockerOk(["image", "inspect", "--format", "{{.Id}}", plan.ref(image)])).trim();
  return { seconds: result.seconds, id };
}

export async function imageSizeBytes(ref: string): Promise<number> {
  return Number((await dockerOk(["image", "inspect", "--format", "{{.Size}}", ref])).trim());
}

export async function imageLabelsOf(ref: string): Promise<Record<string, string>> {
  return JSON.parse(await dockerOk(["image", "inspect", "--format", "{{json .Config.Labels}}", ref])) ?? {};
}
