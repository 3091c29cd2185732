/**
 * The engine side of the build cache: computes the run's keys from the
 * recipe Directory, looks them up (cache.ts), and tells the build what to
 * reuse: the package set by digest (its filesystem becomes packages/ in the
 * images' context), and whole images by digest. Any failure here turns the
 * cache off for the run, with a warning: a cache never fails a build.
 */
import { type Container, dag, type Directory, ExistsType, type Secret } from "@dagger.io/dagger";
import {
  forEachImage,
  imageContainer,
  type Outcome,
  packagesContainer,
  type PackagesSource,
  type PullAuth,
  pulled,
  readyPackages,
  recipeDirectory,
  recipeOf,
} from "../build/build.engine.js";
import type { ImageSpec } from "../core/catalog.js";
import {
  type CacheEntry,
  type CachePlan,
  cacheRepository,
  DEFAULT_MAX_AGE_DAYS,
  entryLabels,
  entryTag,
  newestTag,
  planCache,
  resolveBaseDigest,
  type Scope,
  scopeLabel,
} from "./cache.js";
import { checkInputs, InvalidInputError, noTrailingSlash } from "../core/inputs.js";
import { type ContextReader, encodeParts, runKeys } from "./keys.js";
import type { Logger } from "../core/log.js";
import type { Manifest } from "../core/manifest.js";
import type { PlatformName } from "../core/platform.js";
import { buildArgs, type Resolved } from "../build/plan.js";
import { copyAcross } from "./cache.js";
import { RegistryClient } from "../registry/client.js";
import { formatRef, type ImageRef, parseRef } from "../registry/reference.js";

/**
 * The recipe Directory as the key computation reads it. Walks with `entries`
 * and `exists` (whose answers are the same across engine versions; `glob`'s
 * have not been), a path at a time.
 */
export function directoryContext(dir: Directory): ContextReader {
  const isFile = (path: string) => dir.exists(path, { expectedType: ExistsType.RegularType });
  const isDir = (path: string) => dir.exists(path, { expectedType: ExistsType.DirectoryType });
  const walk = async (path: string, depth: number): Promise<string[]> => {
    if (await isFile(path)) return [path];
    if (depth > 16 || !(await isDir(path))) return [];
    const names = (await dir.entries({ path })).map(noTrailingSlash).sort();
    const nested = await Promise.all(names.map((name) => walk(`${path}/${name}`, depth + 1)));
    return nested.flat();
  };
  // Each walk and each file asked of the engine once, however many targets and platforms read it.
  const walks = new Map<string, Promise<string[]>>();
  const reads = new Map<string, Promise<Uint8Array>>();
  return {
    files: (source) => remembered(walks, source, () => walk(noTrailingSlash(source), 0)),
    read: (path) => remembered(reads, path, async () => Buffer.from(await dir.file(path).contents(), "utf8")),
  };
}

function remembered<T>(memo: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let value = memo.get(key);
  if (!value) memo.set(key, (value = make()));
  return value;
}

/**
 * What a run's cache lookups share across its platforms, each asked once:
 * the registry client, the recipe as read for the keys, the base image's
 * digest and the engine's own platform.
 */
export interface CacheSession {
  client(): Promise<RegistryClient>;
  readonly context: ContextReader;
  baseDigest(): Promise<string>;
  buildPlatform(): Promise<string>;
}

/** A run's cache session (lazy: nothing is asked until a lookup needs it). */
export function cacheSession(dockerfiles: Directory, resolved: Resolved, options: CacheOptions, log: Logger): CacheSession {
  const once = <T>(make: () => Promise<T>) => {
    let value: Promise<T> | undefined;
    return () => (value ??= make());
  };
  return {
    client: once(async () => new RegistryClient({ username: options.username, password: options.password ? await options.password.plaintext() : undefined, logger: log })),
    context: directoryContext(recipeDirectory(dockerfiles, resolved)),
    baseDigest: once(() => resolveBaseDigest(resolved.flavor.baseImage, resolved.flavor.baseDigest)),
    // The package set compiles on the engine's own platform (cross-compiled when it is not the target's).
    buildPlatform: once(() => dag.defaultPlatform()),
  };
}

export interface CacheOptions {
  /** Cache registry path, e.g. registry.gitlab.com/group/project/cache. */
  registry: string;
  username?: string;
  password?: Secret;
  scope: Scope;
  maxAgeDays: number;
}

/** Checks the cache inputs every entry point takes; null when no cache registry is given. */
export function cacheOptions(input: {
  registry?: string;
  username?: string;
  password?: Secret;
  scope: Scope;
  maxAgeDays?: number;
  switch?: string;
}): CacheOptions | null {
  checkInputs({ cacheRegistry: input.registry, cacheUsername: input.username, buildCache: input.switch?.toLowerCase() }, ["cacheRegistry", "cacheUsername"]);
  const state = (input.switch ?? "on").toLowerCase();
  const maxAgeDays = input.maxAgeDays ?? DEFAULT_MAX_AGE_DAYS;
  if (!Number.isInteger(maxAgeDays) || maxAgeDays < 0 || maxAgeDays > 365) {
    throw new InvalidInputError("cache maximum age (days)", String(input.maxAgeDays), ["an integer from 0 to 365"]);
  }
  if (state === "off" || !input.registry) return null;
  return {
    registry: noTrailingSlash(input.registry),
    username: input.username,
    password: input.password,
    scope: input.scope,
    maxAgeDays,
  };
}

/** What the build does with the cache this run. */
export interface CachedBuild {
  readonly options: CacheOptions | null;
  /** Null when the cache is used; else why not (switched off, unreadable base, ...). */
  readonly disabled: string | null;
  readonly plan: CachePlan | null;
  readonly warnings: string[];
  /** BASE_IMAGE by digest, when the manifest pins none and the registry named one. */
  readonly baseImage?: string;
  readonly packages: PackagesSource;
  /** The time written into the entries this run makes. */
  readonly builtAt: string;
  client(): Promise<RegistryClient>;
}

/** A run that does not use the cache. */
export function noCache(why: string): CachedBuild {
  return {
    options: null,
    disabled: why,
    plan: null,
    warnings: [],
    packages: { kind: "build" },
    builtAt: new Date().toISOString(),
    client: () => Promise.reject(new Error("the build cache is off")),
  };
}

/** Keys, base digest and lookups for a run; never throws (a failure is a warning and a cold build). */
export async function prepareCache(
  dockerfiles: Directory,
  manifest: Manifest,
  resolved: Resolved,
  options: CacheOptions | null,
  log: Logger,
  lookup: { images: boolean; session?: CacheSession } = { images: true },
): Promise<CachedBuild> {
  if (!options) return noCache("no cache registry given, or the cache is switched off");
  // Entries are single-platform images keyed per platform; an index of several is not recorded yet.
  if (resolved.platforms.length > 1) return noCache(`the build cache holds single-platform images; this run builds ${resolved.platforms.join(", ")}`);
  const platform = resolved.platforms[0];
  const session = lookup.session ?? cacheSession(dockerfiles, resolved, options, log);
  try {
    const baseDigest = await session.baseDigest();
    const baseImage = resolved.flavor.baseDigest ? undefined : `${resolved.flavor.baseImage}@${baseDigest}`;
    const keys = await runKeys({
      manifest,
      resolved,
      context: session.context,
      buildArgs: buildArgs(manifest, resolved, platform, baseImage),
      baseDigest,
      platform,
      buildPlatform: await session.buildPlatform(),
    });
    const plan = await planCache({
      client: await session.client(),
      registry: options.registry,
      scope: options.scope,
      keys,
      images: lookup.images ? resolved.images.map((i) => i.name) : [],
      maxAgeDays: options.maxAgeDays,
      log,
    });
    const warnings = [plan.packages, ...Object.values(plan.images)].flatMap((r) => r.warnings);
    return {
      options,
      disabled: null,
      plan,
      warnings,
      baseImage,
      packages: plan.packages.hit ? { kind: "cached", ref: plan.packages.entry.ref, ...authOf(options) } : { kind: "build" },
      builtAt: new Date().toISOString(),
      client: session.client,
    };
  } catch (error) {
    const why = `build cache not used: ${(error as Error).message}`;
    log.warn({}, why);
    return { ...noCache(why), warnings: [why] };
  }
}

/** The run narrowed to one of its platforms. */
export function onePlatform(resolved: Resolved, platform: PlatformName): Resolved {
  return { ...resolved, platforms: [platform] };
}

/**
 * The build cache of a ci/publish run, per platform. One platform: the package
 * set and every image (prepareCache). Several: each platform's package set is
 * looked up (and later recorded) under its own key, so an unchanged arm64
 * package set is not cross-compiled again; the images are built, since an
 * entry is a single-platform image and an index of them is not recorded yet.
 * The platforms share one cache session (client, recipe reads, base digest).
 */
export async function prepareRunCaches(
  dockerfiles: Directory,
  manifest: Manifest,
  resolved: Resolved,
  options: CacheOptions | null,
  log: Logger,
  prepare: typeof prepareCache = prepareCache,
): Promise<Map<PlatformName, CachedBuild>> {
  const several = resolved.platforms.length > 1;
  const session = options ? cacheSession(dockerfiles, resolved, options, log) : undefined;
  const caches = new Map<PlatformName, CachedBuild>();
  for (const platform of resolved.platforms) {
    const narrowed = several ? onePlatform(resolved, platform) : resolved;
    caches.set(platform, await prepare(dockerfiles, manifest, narrowed, options, log, { images: !several, ...(session ? { session } : {}) }));
  }
  return caches;
}

function authOf(options: CacheOptions): { auth?: PullAuth } {
  return options.username && options.password ? { auth: { username: options.username, password: options.password } } : {};
}

/** The entry an image is reused from, or null when it is built. */
export function reusedEntry(cached: CachedBuild, image: string): CacheEntry | null {
  const result = cached.plan?.images[image];
  return result?.hit ? result.entry : null;
}

/** The cache labels a built image carries (its key, scope, build time, parts), or none when the cache does not record it. */
export function cacheLabelsOf(cached: CachedBuild, image: string): Record<string, string> {
  const key = cached.plan?.keys.images[image];
  // Only an image the cache looked up is recorded (a run of several platforms records none).
  if (!cached.plan || !key || !(image in cached.plan.images)) return {};
  return entryLabels(key.key, cached.plan.scope, cached.builtAt, encodeParts(key.parts));
}

/** A reused image as a container (pulled by digest as its platform, with the cache's credentials), for `build` and `test`. */
export function reusedContainer(entry: CacheEntry, options: CacheOptions | null, platform: PlatformName): Container {
  return pulled(entry.ref, options ? authOf(options).auth : undefined, platform);
}

/** One image of a local run on one platform: the entry it reuses, or the image built. */
export interface RunImage {
  readonly image: ImageSpec;
  readonly platform: PlatformName;
  readonly entry: CacheEntry | null;
  /** Lazy: the reused entry pulled by digest, or the image built with the run's package set. */
  readonly container: Container;
}

/**
 * Runs `work` for every image of a local run (build-all, test) on every
 * platform, bounded, naming every failure. The package set is readied (pulled,
 * or built beside the OS layers) only when some image is not reused.
 */
export async function forEachRunImage<T>(
  dockerfiles: Directory,
  manifest: Manifest,
  resolved: Resolved,
  cached: CachedBuild,
  work: (item: RunImage) => Promise<T>,
): Promise<{ platform: PlatformName; outcomes: Outcome<T>[] }[]> {
  const building = resolved.images.some((image) => !reusedEntry(cached, image.name));
  const runs: { platform: PlatformName; outcomes: Outcome<T>[] }[] = [];
  for (const platform of resolved.platforms) {
    const r = recipeOf(dockerfiles, manifest, resolved, { platform, baseImage: cached.baseImage });
    const packages = building ? await readyPackages(r, cached.packages) : undefined;
    const outcomes = await forEachImage(resolved.images, (image) => {
      const entry = reusedEntry(cached, image.name);
      const container = entry
        ? reusedContainer(entry, cached.options, platform)
        : imageContainer(r, image, { packages });
      return work({ image, platform, entry, container });
    });
    runs.push({ platform, outcomes });
  }
  return runs;
}

/**
 * Puts a reused image under `ref` (a tag reference in the run's registry) by
 * manifest copy, keeping its digest; returns ref@digest.
 */
export async function adopt(cached: CachedBuild, entry: CacheEntry, ref: string): Promise<string> {
  const target = parseRef(ref);
  if (!target.tag) throw new Error(`adopt ${entry.ref}: ${ref} has no tag`);
  return copyAcross(await cached.client(), parseRef(entry.ref), { ...target, tag: target.tag });
}

/**
 * The package set this run built, as the cache entry to push: the run's
 * platform (the cache serves single-platform runs only), its labels, and the
 * cache's credentials. Lazy: the engine shares it with the build it repeats.
 */
export function packagesEntry(
  cached: CachedBuild,
  dockerfiles: Directory,
  manifest: Manifest,
  resolved: Resolved,
): { container: Container; repository: ImageRef; ref: string; newest: string } {
  const plan = cached.plan;
  if (!plan || !cached.options) throw new Error("the build cache is off");
  const key = plan.keys.packages;
  const repository = cacheRepository(plan.registry, "packages");
  const ref = formatRef({ ...repository, tag: entryTag(key.key, plan.scope) });
  let container = packagesContainer(recipeOf(dockerfiles, manifest, resolved, { baseImage: cached.baseImage }));
  for (const [name, value] of Object.entries(entryLabels(key.key, plan.scope, cached.builtAt, encodeParts(key.parts)))) {
    container = container.withLabel(name, value);
  }
  if (cached.options.username && cached.options.password) {
    container = container.withRegistryAuth(repository.registry, cached.options.username, cached.options.password);
  }
  return { container, repository, ref, newest: newestTag(plan.scope) };
}

/**
 * Writes the package set this run built as a cache entry: pushed (a small
 * image of .deb files) with its labels, then named the scope's newest.
 * Returns the entry's reference, or throws (the caller makes it a warning).
 */
export async function writePackages(
  cached: CachedBuild,
  dockerfiles: Directory,
  manifest: Manifest,
  resolved: Resolved,
): Promise<string> {
  const { container, repository, ref, newest } = packagesEntry(cached, dockerfiles, manifest, resolved);
  const pushed = await container.publish(ref);
  const digest = parseRef(pushed).digest as string;
  await copyAcross(await cached.client(), { ...repository, digest }, { ...repository, tag: newest });
  return `${formatRef(repository)}@${digest}`;
}

/** The scope's label, for reports. */
export function scopeName(cached: CachedBuild): string | null {
  return cached.plan ? scopeLabel(cached.plan.scope) : null;
}

/** One line on what the build cache did, for build-all and test. */
export function cacheLine(cached: CachedBuild): string {
  if (!cached.plan) return `build cache: not used (${cached.disabled})`;
  const reused = Object.values(cached.plan.images).filter((r) => r.hit).length;
  return (
    `build cache ${cached.plan.registry}: package set ${cached.plan.packages.hit ? "hit" : "miss"}, ` +
    `${reused} of ${Object.keys(cached.plan.images).length} images reused` +
    (cached.warnings.length > 0 ? `; warnings: ${cached.warnings.join("; ")}` : "")
  );
}
