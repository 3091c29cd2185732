/**
 * The build cache in the registry: entries are ordinary images (the package
 * set, and each image as it was pushed) under `<cache>/<name>:<key48>-<scope>`,
 * where the key is keys.ts's. Plain functions over the registry client,
 * so the tests run them against a real registry.
 *
 * - An entry is used only by digest, after its manifest and its config's
 *   labels (key, scope, build time) were read back and match; a foreign,
 *   malformed or unreadable entry, an unreachable or refusing registry, all
 *   mean "build it", with a warning. A failed write is a warning.
 * - Scopes: a default-branch run reads only entries written by default-branch
 *   runs; a branch run reads those and its own; a local run those and local ones.
 * - Entries older than the maximum age (default 7 days) are not reused, so the
 *   distribution's updates reach the images at least that often.
 * - A hit is adopted by manifest copy: the entry's blobs are mounted into the
 *   image's repository (no layer upload), its manifest put under the tag and
 *   read back, so the image keeps the entry's digest.
 */
import { silentLogger, type Logger } from "../core/log.js";
import { decodeParts, type RunKeys, shortParts } from "./keys.js";
import { MEDIA_TYPES, RegistryClient } from "../registry/client.js";
import { RegistryError } from "../registry/errors.js";
import { formatRef, type ImageRef, repositoryOf } from "../registry/reference.js";
import { refSlug } from "../core/tags.js";

export const CACHE_LABELS = {
  key: "org.slinky-containers.cache.key",
  scope: "org.slinky-containers.cache.scope",
  built: "org.slinky-containers.cache.built",
  parts: "org.slinky-containers.cache.parts",
} as const;

export const DEFAULT_MAX_AGE_DAYS = 7;
/** How much of the key a tag carries (192 bits), leaving room for the scope in OCI's 128 characters. */
export const TAG_KEY_CHARS = 48;

/** Who wrote an entry: default-branch runs, one branch's runs, or local runs. */
export type Scope = { kind: "default" } | { kind: "branch"; slug: string } | { kind: "local" };

/** The scope a run writes: empty branch = local. */
export function scopeOf(branch: string, defaultBranch: string): Scope {
  if (!branch) return { kind: "local" };
  if (branch === defaultBranch) return { kind: "default" };
  return { kind: "branch", slug: refSlug(branch) || "_" };
}

/** The scopes a run may read, in order: the default branch's first. */
export function readableScopes(scope: Scope): Scope[] {
  return scope.kind === "default" ? [scope] : [{ kind: "default" }, scope];
}

/** The scope as a label value: default, branch:<slug>, local. */
export function scopeLabel(scope: Scope): string {
  return scope.kind === "branch" ? `branch:${scope.slug}` : scope.kind;
}

/** The scope as a tag suffix: d, b-<slug>, l. */
export function scopeTag(scope: Scope): string {
  return scope.kind === "default" ? "d" : scope.kind === "local" ? "l" : `b-${scope.slug}`;
}

/** The entry's tag: first 48 hex of the key, then the scope. */
export function entryTag(key: string, scope: Scope): string {
  if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`cache key ${JSON.stringify(key)} is not 64 hex characters`);
  return `${key.slice(0, TAG_KEY_CHARS)}-${scopeTag(scope)}`;
}

/** The tag that always names the newest entry of a scope (used to tell what changed). */
export function newestTag(scope: Scope): string {
  return `newest-${scopeTag(scope)}`;
}

/** The cache repository of a package set or an image, e.g. registry/group/project/cache/slurmd. */
export function cacheRepository(cacheRegistry: string, name: string): ImageRef {
  return repositoryOf(cacheRegistry, name);
}

/** The labels a cache entry carries in its image config. */
export function entryLabels(key: string, scope: Scope, built: string, parts: string): Record<string, string> {
  return { [CACHE_LABELS.key]: key, [CACHE_LABELS.scope]: scopeLabel(scope), [CACHE_LABELS.built]: built, [CACHE_LABELS.parts]: parts };
}

export interface CacheEntry {
  /** repository@sha256:... */
  readonly ref: string;
  readonly digest: string;
  readonly tag: string;
  readonly scope: string;
  readonly built: string;
}

export type LookupResult =
  | { readonly hit: true; readonly entry: CacheEntry; readonly warnings: string[] }
  | {
      readonly hit: false;
      /** Why not, one clause per scope looked at. */
      readonly reason: string;
      /** Foreign, malformed, unreadable or unreachable entries: the run says so. */
      readonly warnings: string[];
      /** Inputs that differ from the newest entry of the run's scopes, when it could be read. */
      readonly changed: string[] | null;
    };

export interface LookupOptions {
  client: RegistryClient;
  repository: ImageRef;
  key: string;
  /** The run's own scope; readableScopes(scope) are looked at. */
  scope: Scope;
  /** This key's parts, to tell what changed since the newest entry (optional). */
  parts?: Readonly<Record<string, string>>;
  maxAgeDays?: number;
  now?: number;
  log?: Logger;
}

interface ReadEntry {
  digest: string;
  labels: Record<string, string>;
  created: string | undefined;
}

class Unusable extends Error {}

const IMAGE_MANIFESTS = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);

/** Reads an entry's manifest (by tag, then pinned to the digest read) and its config's labels. */
async function readEntry(client: RegistryClient, repository: ImageRef, tag: string): Promise<ReadEntry | null> {
  const head = await client.headManifest({ ...repository, tag });
  if (!head) return null;
  const manifest = await client.getManifest({ ...repository, digest: head.digest });
  if (!IMAGE_MANIFESTS.has(manifest.mediaType)) throw new Unusable(`malformed: media type ${manifest.mediaType} is not an image manifest`);
  let doc: { config?: { digest?: string }; layers?: unknown[] };
  try {
    doc = JSON.parse(manifest.bytes.toString("utf8")) as typeof doc;
  } catch {
    throw new Unusable("malformed: the manifest is not JSON");
  }
  const configDigest = doc.config?.digest;
  if (!configDigest || !Array.isArray(doc.layers)) throw new Unusable("malformed: the manifest names no config or layers");
  let config: { created?: string; config?: { Labels?: Record<string, string> | null } };
  try {
    config = JSON.parse((await client.getBlob({ ...repository, digest: manifest.digest }, configDigest)).toString("utf8")) as typeof config;
  } catch (error) {
    if (error instanceof RegistryError) throw error;
    throw new Unusable("malformed: the image config is not JSON");
  }
  return { digest: manifest.digest, labels: config.config?.Labels ?? {}, created: config.created };
}

/**
 * Looks the key up in the scopes the run may read. Never throws: an
 * unreachable registry or a bad entry is a miss with a warning.
 */
export async function lookup(options: LookupOptions): Promise<LookupResult> {
  const log = options.log ?? silentLogger();
  const now = options.now ?? Date.now();
  const maxAgeMs = (options.maxAgeDays ?? DEFAULT_MAX_AGE_DAYS) * 86_400_000;
  const where = formatRef(options.repository);
  const reasons: string[] = [];
  const warnings: string[] = [];
  const warn = (text: string) => {
    warnings.push(text);
    log.warn({ cache: where }, text);
  };
  for (const scope of readableScopes(options.scope)) {
    const tag = entryTag(options.key, scope);
    try {
      const entry = await readEntry(options.client, options.repository, tag);
      if (!entry) {
        reasons.push(`no entry ${tag}`);
        continue;
      }
      const { labels } = entry;
      if (labels[CACHE_LABELS.key] !== options.key) {
        warn(`cache entry ${where}:${tag} is foreign: its key label is ${JSON.stringify(labels[CACHE_LABELS.key] ?? null)}; rebuilding`);
        reasons.push(`${tag} is foreign (key label does not match)`);
        continue;
      }
      if (labels[CACHE_LABELS.scope] !== scopeLabel(scope)) {
        warn(`cache entry ${where}:${tag} says scope ${JSON.stringify(labels[CACHE_LABELS.scope] ?? null)}, its tag ${scopeLabel(scope)}; not used`);
        reasons.push(`${tag} is foreign (scope label does not match)`);
        continue;
      }
      const built = labels[CACHE_LABELS.built] ?? entry.created ?? "";
      const builtMs = Date.parse(built);
      if (Number.isNaN(builtMs)) {
        warn(`cache entry ${where}:${tag} has no readable build time; rebuilding`);
        reasons.push(`${tag} has no build time`);
        continue;
      }
      if (now - builtMs > maxAgeMs) {
        reasons.push(`${tag} expired (built ${built}, older than ${options.maxAgeDays ?? DEFAULT_MAX_AGE_DAYS} days)`);
        continue;
      }
      const ref = formatRef({ ...options.repository, digest: entry.digest });
      log.info({ cache: where, tag, digest: entry.digest }, "cache hit");
      return { hit: true, entry: { ref, digest: entry.digest, tag, scope: scopeLabel(scope), built }, warnings };
    } catch (error) {
      const why = error instanceof Unusable ? error.message : `unreadable: ${(error as Error).message}`;
      warn(`cache entry ${where}:${tag}: ${why}; rebuilding`);
      reasons.push(`${tag} ${why}`);
    }
  }
  return { hit: false, reason: reasons.join("; "), warnings, changed: await changedSinceNewest(options) };
}

/** What differs from the newest entry of the run's own scope (else the default's), when it can be read. */
async function changedSinceNewest(options: LookupOptions): Promise<string[] | null> {
  if (!options.parts) return null;
  for (const scope of [...readableScopes(options.scope)].reverse()) {
    try {
      const entry = await readEntry(options.client, options.repository, newestTag(scope));
      const label = entry?.labels[CACHE_LABELS.parts];
      if (!label) continue;
      const before = decodeParts(label);
      const after = shortParts(options.parts);
      return [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((name) => before[name] !== after[name]).sort();
    } catch {
      // only an explanation: a miss stays a miss
    }
  }
  return null;
}

/**
 * Puts the image at `source` (repository@digest) under `target`'s tag in
 * another repository of the same registry: blobs mounted across (copied when
 * the registry will not mount), manifest put with its own media type, read
 * back and compared. Returns the target as repository:tag@digest.
 */
export async function copyAcross(client: RegistryClient, source: ImageRef, target: ImageRef & { tag: string }): Promise<string> {
  if (!source.digest) throw new Error(`copy ${formatRef(source)}: the source must be a digest reference`);
  if (source.registry !== target.registry) {
    throw new Error(`copy ${formatRef(source)} to ${formatRef(target)}: across registries a manifest copy cannot keep the digest`);
  }
  const back = await client.copyManifest(source, target.tag, target.repository);
  return `${formatRef(target)}@${back.digest}`;
}

export interface WriteOptions {
  client: RegistryClient;
  /** The image as pushed (repository@digest), with the cache labels in its config. */
  source: ImageRef;
  repository: ImageRef;
  key: string;
  scope: Scope;
  log?: Logger;
}

/**
 * Records an image as the cache entry of its key (and as the scope's newest):
 * a manifest copy, no layer upload. Never throws: a failed write is a warning,
 * returned as `error`.
 */
export async function writeEntry(options: WriteOptions): Promise<{ ref: string | null; error: string | null }> {
  const log = options.log ?? silentLogger();
  const tag = entryTag(options.key, options.scope);
  try {
    const ref = await copyAcross(options.client, options.source, { ...options.repository, tag });
    await copyAcross(options.client, { ...options.repository, digest: options.source.digest as string }, {
      ...options.repository,
      tag: newestTag(options.scope),
    });
    log.info({ cache: ref }, "cache entry written");
    return { ref, error: null };
  } catch (error) {
    const text = `cache write ${formatRef({ ...options.repository, tag })} failed: ${(error as Error).message}`;
    log.warn({}, text);
    return { ref: null, error: text };
  }
}

/** What the cache says about a run, before anything is built. */
export interface CachePlan {
  /** The cache registry path, e.g. registry/group/project/cache. */
  readonly registry: string;
  readonly scope: Scope;
  readonly maxAgeDays: number;
  readonly keys: RunKeys;
  readonly packages: LookupResult;
  readonly images: Readonly<Record<string, LookupResult>>;
}

export interface PlanCacheOptions {
  client: RegistryClient;
  registry: string;
  scope: Scope;
  keys: RunKeys;
  images: readonly string[];
  maxAgeDays?: number;
  log?: Logger;
}

/** Looks up the package set and every image (concurrently; the client bounds the requests). */
export async function planCache(options: PlanCacheOptions): Promise<CachePlan> {
  const common = { client: options.client, scope: options.scope, maxAgeDays: options.maxAgeDays, log: options.log };
  const [packages, ...images] = await Promise.all([
    lookup({ ...common, repository: cacheRepository(options.registry, "packages"), key: options.keys.packages.key, parts: options.keys.packages.parts }),
    ...options.images.map((name) => {
      const key = options.keys.images[name];
      if (!key) throw new Error(`no key for image ${name}`);
      return lookup({ ...common, repository: cacheRepository(options.registry, name), key: key.key, parts: key.parts });
    }),
  ]);
  return {
    registry: options.registry,
    scope: options.scope,
    maxAgeDays: options.maxAgeDays ?? DEFAULT_MAX_AGE_DAYS,
    keys: options.keys,
    packages: packages as LookupResult,
    images: Object.fromEntries(options.images.map((name, i) => [name, images[i] as LookupResult])),
  };
}

/**
 * The base image's digest: the manifest's pin, else the registry's answer for
 * the tag (asked without credentials: the run's are for its own registry).
 */
export async function resolveBaseDigest(baseImage: string, pinned: string | null, client = new RegistryClient()): Promise<string> {
  if (pinned) return pinned;
  const head = await client.headManifest(baseImage);
  if (!head) throw new Error(`base image ${baseImage} not found in its registry`);
  return head.digest;
}

/** One line per image and for the package set: hit or miss, and why. */
export interface CacheSummaryRow {
  readonly name: string;
  readonly key: string;
  readonly hit: boolean;
  readonly from: string | null;
  readonly reason: string | null;
  readonly changed: string[] | null;
}

export function summaryRows(plan: CachePlan): CacheSummaryRow[] {
  const row = (name: string, key: string, result: LookupResult): CacheSummaryRow =>
    result.hit
      ? { name, key, hit: true, from: result.entry.ref, reason: null, changed: null }
      : { name, key, hit: false, from: null, reason: result.reason, changed: result.changed };
  return [
    row("packages", plan.keys.packages.key, plan.packages),
    ...Object.entries(plan.images).map(([name, result]) => row(name, plan.keys.images[name]?.key ?? "", result)),
  ];
}
