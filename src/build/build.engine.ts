/**
 * The Dagger build. The recipe has two halves: Dockerfile.packages compiles
 * the package set (its `packages` target: /slurm/*.deb, /pyxis/*.deb), and
 * Dockerfile builds each image as one target, with the package set composed
 * into its build context as packages/ (dockerBuild has no named contexts).
 * The package set is either built or, on a build-cache hit, the filesystem of
 * the cache entry pulled by digest.
 */
import { type Container, dag, type Directory, type Platform, type Secret } from "@dagger.io/dagger";
import pLimit from "p-limit";
import { besideCompileTargets, COMPILE_DEPS_TARGET, type ImageSpec, PACKAGES_TARGET } from "../core/catalog.js";
import type { Manifest } from "../core/manifest.js";
import { DEFAULT_PLATFORM, type PlatformName } from "../core/platform.js";
import { buildArgs, imageLabels, type Provenance, type Resolved } from "./plan.js";

/** How many targets are asked of the engine at once. */
export const BUILD_CONCURRENCY = 4;

/** The recipe folder of the flavor's family, e.g. dockerfiles/debian. */
export function recipeDirectory(dockerfiles: Directory, resolved: Resolved): Directory {
  return dockerfiles.directory(resolved.flavor.family);
}

/** What every target of one run on one platform is built from. */
export interface Recipe {
  readonly dockerfiles: Directory;
  readonly manifest: Manifest;
  readonly resolved: Resolved;
  /** The platform to build (the engine emulates a foreign one). */
  readonly platform: PlatformName;
  /** BASE_IMAGE by digest, when the build cache resolved one the manifest does not pin. */
  readonly baseImage?: string;
}

/** A run's recipe for one platform (default: the run's first). */
export function recipeOf(
  dockerfiles: Directory,
  manifest: Manifest,
  resolved: Resolved,
  options: { platform?: PlatformName; baseImage?: string } = {},
): Recipe {
  return { dockerfiles, manifest, resolved, platform: options.platform ?? resolved.platforms[0] ?? DEFAULT_PLATFORM, baseImage: options.baseImage };
}

/** One target of the recipe, built for its platform with that platform's build arguments. */
function dockerBuild(r: Recipe, dockerfile: string, target: string, context = recipeDirectory(r.dockerfiles, r.resolved)): Container {
  const args = buildArgs(r.manifest, r.resolved, r.platform, r.baseImage);
  return context.dockerBuild({
    dockerfile,
    target,
    buildArgs: Object.entries(args).map(([name, value]) => ({ name, value })),
    platform: r.platform as Platform,
  });
}

/** Credentials to pull from a registry (the cache's). */
export interface PullAuth {
  readonly username: string;
  readonly password: Secret;
}

/** Where the package set comes from: built here, or a cache entry by digest (ref@sha256:...). */
export type PackagesSource = { kind: "build" } | { kind: "cached"; ref: string; auth?: PullAuth };

/** An image pulled by digest (as the platform given, when given), with the registry's credentials when it needs them. */
export function pulled(ref: string, auth?: PullAuth, platform?: PlatformName): Container {
  const base = platform ? dag.container({ platform: platform as Platform }) : dag.container();
  const host = ref.split("/")[0] as string;
  return (auth ? base.withRegistryAuth(host, auth.username, auth.password) : base).from(ref);
}

/** The package set built from Dockerfile.packages (a FROM-scratch image). */
export function packagesContainer(r: Recipe): Container {
  return dockerBuild(r, "Dockerfile.packages", PACKAGES_TARGET);
}

/** The package set's files (slurm/, pyxis/), built or pulled by digest from the build cache. */
export function packagesDirectory(r: Recipe, source: PackagesSource = { kind: "build" }): Directory {
  // The entry is one platform's image: pulled as that platform, not the engine's.
  if (source.kind === "cached") return pulled(source.ref, source.auth, r.platform).rootfs();
  return packagesContainer(r).rootfs();
}

/**
 * The OS-layer targets, and the pyxis downloads when the run has a pyxis image:
 * nothing of the compile in them. Syncing them while the packages build puts
 * the distribution installs beside the compile instead of after it; the image
 * builds then find them in the engine's cache.
 */
export function osLayers(r: Recipe): Container[] {
  return besideCompileTargets(r.resolved.images).map((target) => dockerBuild(r, "Dockerfile", target));
}

/** Anything the engine can be asked to have ready (a Container, a Directory). */
export interface Syncable {
  sync(): Promise<unknown>;
}

/**
 * Syncs `main` and, beside it, `after`, which starts once every one of `gate`
 * is ready: work that should take the cores only once `main` no longer waits
 * on `gate`'s installs. Resolves when all are ready; rejects on the first failure.
 */
export async function syncGated(main: Syncable, gate: readonly Syncable[], after: readonly Syncable[]): Promise<void> {
  const first = main.sync();
  const gated = (async () => {
    await Promise.all(gate.map((item) => item.sync()));
    await Promise.all(after.map((item) => item.sync()));
  })();
  await Promise.all([first, gated]);
}

/**
 * The package set, ready: built (or pulled) while the OS layers build beside
 * it, so a cold build's distribution installs overlap the compile. When it is
 * built, the OS layers start once the compile can (COMPILE_DEPS_TARGET: its
 * build tools and build dependencies are in), so they do not slow the installs
 * the compile waits for.
 */
export async function readyPackages(r: Recipe, source: PackagesSource = { kind: "build" }): Promise<Directory> {
  const packages = packagesDirectory(r, source);
  const gate = source.kind === "build" ? [dockerBuild(r, "Dockerfile.packages", COMPILE_DEPS_TARGET)] : [];
  await syncGated(packages, gate, osLayers(r));
  return packages;
}

export interface ImageOptions {
  provenance?: Provenance;
  /** The package set, of the recipe's platform; built from Dockerfile.packages when not given. */
  packages?: Directory;
  /** Labels added after the plan's (the build cache's key and scope). */
  extraLabels?: Record<string, string>;
}

/** The container of one image, lazily: nothing runs until it is used. */
export function imageContainer(r: Recipe, image: ImageSpec, options: ImageOptions = {}): Container {
  const packages = options.packages ?? packagesDirectory(r);
  const built = dockerBuild(r, "Dockerfile", image.target, recipeDirectory(r.dockerfiles, r.resolved).withDirectory("packages", packages));
  const labels = { ...imageLabels(r.manifest, r.resolved, image, options.provenance ?? {}), ...(options.extraLabels ?? {}) };
  return Object.entries(labels).reduce((container, [name, value]) => container.withLabel(name, value), built);
}

export interface Outcome<T> {
  readonly image: string;
  readonly seconds: number;
  readonly value?: T;
  readonly error?: string;
}

/** Thrown when any image failed; names every failure, not only the first. */
export class ImagesFailedError extends Error {
  constructor(readonly outcomes: readonly Outcome<unknown>[]) {
    const failed = outcomes.filter((outcome) => outcome.error !== undefined);
    const ok = outcomes.filter((outcome) => outcome.error === undefined).map((outcome) => outcome.image);
    super(
      `${failed.length} of ${outcomes.length} images failed:\n` +
        failed.map((outcome) => `  ${outcome.image}: ${outcome.error}`).join("\n") +
        `\nsucceeded: ${ok.join(", ") || "none"}`,
    );
    this.name = "ImagesFailedError";
  }
}

/**
 * Runs `work` for every image with bounded concurrency, waits for all of
 * them, and throws ImagesFailedError naming every failure.
 */
export async function forEachImage<T>(
  images: readonly ImageSpec[],
  work: (image: ImageSpec) => Promise<T>,
  concurrency = BUILD_CONCURRENCY,
): Promise<Outcome<T>[]> {
  const limit = pLimit(concurrency);
  const outcomes = await Promise.all(
    images.map((image) =>
      limit(async (): Promise<Outcome<T>> => {
        const started = performance.now();
        const seconds = () => Math.round((performance.now() - started) / 100) / 10;
        try {
          const value = await work(image);
          return { image: image.name, seconds: seconds(), value };
        } catch (error) {
          return { image: image.name, seconds: seconds(), error: (error as Error).message ?? String(error) };
        }
      }),
    ),
  );
  if (outcomes.some((outcome) => outcome.error !== undefined)) throw new ImagesFailedError(outcomes);
  return outcomes;
}
