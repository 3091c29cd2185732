/**
 * A small client for the OCI distribution API (the registry HTTP API v2).
 *
 * It reads, writes and copies manifests by their exact bytes, so a manifest
 * copied under a new tag keeps its digest. It answers basic-auth and bearer
 * token challenges (the `WWW-Authenticate` flow of GitLab's registry, Docker
 * Hub and GHCR), retries transient failures (5xx, 429 with `Retry-After`,
 * connection resets, timeouts) with bounded backoff, and never retries
 * authentication, permission or not-found errors. The password is used only
 * in request headers; it never appears in an error message or a log line.
 */
import { createHash } from "node:crypto";
import pLimit, { type LimitFunction } from "p-limit";
import pRetry from "p-retry";
import { registerSecret, silentLogger, type Logger } from "./log.js";
import { TAG_PATTERN } from "./tags.js";

export const MEDIA_TYPES = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
} as const;

/** Accept header for manifest requests: OCI and Docker, images and indexes. */
export const MANIFEST_ACCEPT = Object.values(MEDIA_TYPES).join(", ");

const DOCKER_HUB = "docker.io";
const DOCKER_HUB_API = "registry-1.docker.io";

const REPOSITORY_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const DIGEST_RE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** An image reference: registry host[:port], repository path, tag and/or digest. */
export interface ImageRef {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export class InvalidReferenceError extends Error {
  constructor(ref: string, why: string) {
    super(`invalid image reference ${JSON.stringify(ref)}: ${why}`);
    this.name = "InvalidReferenceError";
  }
}

/**
 * Parse `[host[:port]/]path[:tag][@digest]`. Without a host (the first path
 * component has no `.` or `:` and is not `localhost`) the registry is
 * docker.io, and a single-component path gets the `library/` prefix.
 */
export function parseRef(input: string): ImageRef {
  let rest = input.trim();
  if (!rest) throw new InvalidReferenceError(input, "empty");
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const m = DIGEST_RE.exec(digest);
    if (!m) throw new InvalidReferenceError(input, `bad digest ${JSON.stringify(digest)}`);
    if (m[1] === "sha256" && !/^[a-f0-9]{64}$/.test(m[2] ?? "")) {
      throw new InvalidReferenceError(input, "a sha256 digest has 64 lowercase hex digits");
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_PATTERN.test(tag)) throw new InvalidReferenceError(input, `bad tag ${JSON.stringify(tag)}`);
  }
  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf("/");
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost") {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (registry === "index.docker.io" || registry === DOCKER_HUB_API) registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes("/")) repository = `library/${repository}`;
  if (!REPOSITORY_RE.test(repository)) {
    throw new InvalidReferenceError(input, `bad repository path ${JSON.stringify(repository)}`);
  }
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** `host/repository[:tag][@digest]`. */
export function formatRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/**
 * The repository `name` under a registry path (host[:port][/group/project], a
 * trailing "/" ignored), e.g. registry.example.com/group/project + slurmd.
 */
export function repositoryOf(registryPath: string, name: string): ImageRef {
  const ref = parseRef(`${registryPath.replace(/\/+$/, "")}/${name}`);
  return { registry: ref.registry, repository: ref.repository };
}

function toRef(ref: string | ImageRef): ImageRef {
  return typeof ref === "string" ? parseRef(ref) : ref;
}

/** `algorithm:hex` digest of exactly these bytes (sha256 unless told). */
export function digestOf(bytes: Uint8Array, algorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}

/** True when `digest` is the digest of `bytes`. */
export function verifyDigest(bytes: Uint8Array, digest: string): boolean {
  const algorithm = digest.slice(0, digest.indexOf(":"));
  if (algorithm !== "sha256" && algorithm !== "sha512") return false;
  return digestOf(bytes, algorithm) === digest;
}

/** Any failure talking to a registry; `transient` failures are retried. */
export class RegistryError extends Error {
  readonly ref: string;
  readonly operation: string;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly transient: boolean;
  readonly retryAfterMs: number | undefined;
  constructor(
    message: string,
    fields: {
      ref: string;
      operation: string;
      status?: number;
      code?: string;
      transient?: boolean;
      retryAfterMs?: number;
    },
  ) {
    super(message);
    this.name = "RegistryError";
    this.ref = fields.ref;
    this.operation = fields.operation;
    this.status = fields.status;
    this.code = fields.code;
    this.transient = fields.transient ?? false;
    this.retryAfterMs = fields.retryAfterMs;
  }
}

/** 401/403: wrong credentials, expired token or missing permission. Never retried. */
export class RegistryAuthError extends RegistryError {
  constructor(message: string, fields: ConstructorParameters<typeof RegistryError>[1]) {
    super(message, { ...fields, transient: false });
    this.name = "RegistryAuthError";
  }
}

/** 404: no such repository, tag, manifest or blob. Never retried. */
export class RegistryNotFoundError extends RegistryError {
  constructor(message: string, fields: ConstructorParameters<typeof RegistryError>[1]) {
    super(message, { ...fields, transient: false });
    this.name = "RegistryNotFoundError";
  }
}

/** The bytes read back do not hash to the digest expected. Never retried. */
export class DigestMismatchError extends RegistryError {
  constructor(message: string, fields: ConstructorParameters<typeof RegistryError>[1]) {
    super(message, { ...fields, transient: false });
    this.name = "DigestMismatchError";
  }
}

/** An error `RegistryClient.retry` never retries, even with `retryAny`. */
export class NotRetried extends Error {}

/** A manifest exactly as the registry stores it. */
export interface Manifest {
  ref: ImageRef;
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

/** One platform of an image index: e.g. linux/arm64 and its manifest's digest. */
export interface PlatformDigest {
  platform: string;
  digest: string;
}

export interface ManifestHead {
  digest: string;
  mediaType: string;
  size: number;
}

export interface RegistryClientOptions {
  username?: string;
  password?: string;
  /** Use http:// for every registry (true) or for these hosts (host[:port]). Default https. */
  plainHttp?: boolean | readonly string[];
  /** Retries after the first attempt for transient failures (default 4). */
  retries?: number;
  /** First backoff delay in ms (default 500), doubling up to maxBackoffMs (default 8000). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Longest Retry-After honoured, in ms (default 60000). */
  maxRetryAfterMs?: number;
  /** Per-request timeout in ms (default 120000). */
  requestTimeoutMs?: number;
  /** HTTP requests in flight at once (default 6). */
  concurrency?: number;
  logger?: Logger;
  userAgent?: string;
}

interface Challenge {
  scheme: "basic" | "bearer";
  params: Record<string, string>;
}

interface RawResponse {
  status: number;
  headers: Headers;
  body: Buffer;
  url: string;
}

interface Op {
  /** What the user asked for, in error messages ("get manifest", "push blob", ...). */
  operation: string;
  ref: ImageRef;
  method: string;
  /** Absolute URL, or a path under /v2/<repository>/. */
  url?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Statuses that mean success. */
  ok: number[];
  /** Statuses returned to the caller instead of thrown. */
  pass?: number[];
  /** A second repository's scope the token must also grant (cross-repository blob mount). */
  extraScope?: string;
}

type HostAuth = { kind: "basic" } | { kind: "bearer"; realm: string; service: string | undefined };

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current && typeof current === "object"; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const name = (current as { name?: unknown }).name;
    if (name === "TimeoutError" || name === "AbortError") return "ETIMEDOUT";
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Parse `Bearer realm="...",service="...",scope="..."` (or Basic). */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const match = /^\s*(basic|bearer)\b(.*)$/i.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let m = re.exec(match[2] ?? ""); m; m = re.exec(match[2] ?? "")) {
    params[(m[1] ?? "").toLowerCase()] = (m[2] ?? m[3] ?? "").replace(/\\(.)/g, "$1");
  }
  return { scheme: (match[1] ?? "").toLowerCase() as "basic" | "bearer", params };
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function registryErrorText(body: Buffer): { code?: string; text: string } {
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first) {
      const code = first.code;
      const message = `${first.code ?? ""}${first.message ? `: ${first.message}` : ""}`;
      return { ...(code ? { code } : {}), text: message.slice(0, 300) };
    }
  } catch {
    // not a registry error document
  }
  return { text: body.toString("utf8").replace(/\s+/g, " ").trim().slice(0, 200) };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Whether two token scopes grant the same: the registry may list a scope's
 * actions in any order ("pull,push" or "push,pull") from one challenge to the next.
 */
export function sameScope(a: string, b: string): boolean {
  const norm = (scope: string) =>
    scope
      .split(" ")
      .filter(Boolean)
      .map((part) => {
        const at = part.lastIndexOf(":");
        return `${part.slice(0, at)}:${part.slice(at + 1).split(",").sort().join(",")}`;
      })
      .sort()
      .join(" ");
  return norm(a) === norm(b);
}

/** An OCI distribution API client for one set of credentials. */
export class RegistryClient {
  private readonly username: string | undefined;
  private readonly password: string | undefined;
  private readonly options: RegistryClientOptions;
  private readonly log: Logger;
  private readonly limit: LimitFunction;
  private readonly hostAuth = new Map<string, HostAuth>();
  private readonly tokens = new Map<string, { token: string; expiresAt: number }>();
  /** HTTP requests sent (registry and token service), for figures and tests. */
  requests = 0;
  /** How transient failures are retried (what promotion's rollback retries with, too). */
  readonly retryPolicy: { retries: number; minBackoffMs: number; maxBackoffMs: number };

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
    this.username = options.username || undefined;
    this.password = options.password || undefined;
    registerSecret(this.password);
    this.log = options.logger ?? silentLogger();
    this.limit = pLimit(options.concurrency ?? 6);
    this.retryPolicy = {
      retries: options.retries ?? 4,
      minBackoffMs: options.minBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 8000,
    };
  }

  // ---- public API -------------------------------------------------------

  /** GET a manifest by tag or digest; its digest is computed from the exact bytes and checked. */
  async getManifest(ref: string | ImageRef): Promise<Manifest> {
    const r = toRef(ref);
    const res = await this.send({
      operation: "get manifest",
      ref: r,
      method: "GET",
      path: `manifests/${r.digest ?? r.tag ?? "latest"}`,
      headers: { accept: MANIFEST_ACCEPT },
      ok: [200],
    });
    const digest = digestOf(res.body);
    this.checkDigest(r, "get manifest", digest, r.digest, res.headers.get("docker-content-digest"));
    return { ref: r, digest, mediaType: manifestMediaType(res.headers.get("content-type"), res.body), bytes: res.body };
  }

  /** HEAD a manifest: its digest, media type and size, or null if it does not exist. */
  async headManifest(ref: string | ImageRef): Promise<ManifestHead | null> {
    const r = toRef(ref);
    const res = await this.send({
      operation: "head manifest",
      ref: r,
      method: "HEAD",
      path: `manifests/${r.digest ?? r.tag ?? "latest"}`,
      headers: { accept: MANIFEST_ACCEPT },
      ok: [200],
      pass: [404],
    });
    if (res.status === 404) return null;
    const digest = res.headers.get("docker-content-digest");
    if (!digest) {
      const m = await this.getManifest(r);
      return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
    }
    return {
      digest,
      mediaType: (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "",
      size: Number(res.headers.get("content-length") ?? 0),
    };
  }

  /** PUT manifest bytes under a tag (or digest) with their media type; returns the digest. */
  async putManifest(ref: string | ImageRef, bytes: Buffer, mediaType: string, options: { once?: boolean } = {}): Promise<string> {
    const r = toRef(ref);
    const digest = digestOf(bytes);
    // once: a single attempt, for callers that check the registry before each retry themselves.
    const res = await (options.once ? this.sendOnce.bind(this) : this.send.bind(this))({
      operation: "put manifest",
      ref: r,
      method: "PUT",
      path: `manifests/${r.tag ?? r.digest ?? digest}`,
      headers: { "content-type": mediaType },
      body: bytes,
      ok: [201, 200, 202],
    });
    this.checkDigest(r, "put manifest", digest, r.tag ? undefined : r.digest, res.headers.get("docker-content-digest"));
    return digest;
  }

  /**
   * Copy the manifest at `source` (which must carry a digest) to `tag` in its
   * repository, or in `repository` of the same registry: GET by digest, make
   * its blobs part of the target repository (cross-repository mounts, an
   * upload only where the registry does not mount), PUT the same bytes with
   * the same media type, read the tag back and compare digests. Never
   * rebuilds anything.
   */
  async copyManifest(source: string | ImageRef, tag: string, repository?: string): Promise<ManifestHead> {
    const src = toRef(source);
    if (!src.digest) {
      throw new RegistryError(`copy manifest ${formatRef(src)}: the source must be a digest reference`, {
        ref: formatRef(src),
        operation: "copy manifest",
      });
    }
    const target: ImageRef = { registry: src.registry, repository: repository ?? src.repository, tag };
    const manifest = await this.getManifest({ registry: src.registry, repository: src.repository, digest: src.digest });
    if (target.repository !== src.repository) await this.mountBlobsOf(manifest, target);
    await this.putManifest(target, manifest.bytes, manifest.mediaType);
    const back = await this.getManifest(target);
    if (back.digest !== src.digest) {
      throw new DigestMismatchError(
        `copy manifest to ${formatRef(target)}: read back ${back.digest}, expected ${src.digest}`,
        { ref: formatRef(target), operation: "copy manifest" },
      );
    }
    this.log.info({ op: "copy manifest", to: formatRef(target), digest: back.digest }, "tag set");
    return { digest: back.digest, mediaType: back.mediaType, size: back.bytes.length };
  }

  /**
   * Delete a tag (not the manifest): "deleted", or "unsupported" when the
   * registry only deletes by digest (which would remove every tag of it).
   */
  async deleteTag(ref: string | ImageRef): Promise<"deleted" | "unsupported"> {
    const r = toRef(ref);
    if (!r.tag) throw new RegistryError(`delete tag ${formatRef(r)}: no tag`, { ref: formatRef(r), operation: "delete tag" });
    const res = await this.send({
      operation: "delete tag",
      ref: { registry: r.registry, repository: r.repository, tag: r.tag },
      method: "DELETE",
      path: `manifests/${r.tag}`,
      ok: [202, 200],
      pass: [400, 405],
    });
    return res.status === 202 || res.status === 200 ? "deleted" : "unsupported";
  }

  /** Tags of a repository (follows Link pagination, at most 50 pages). */
  async listTags(ref: string | ImageRef): Promise<string[]> {
    const r = toRef(ref);
    const tags: string[] = [];
    let path: string | undefined = "tags/list?n=1000";
    let url: string | undefined;
    for (let page = 0; page < 50 && (path || url); page++) {
      const res: RawResponse = await this.send({
        operation: "list tags",
        ref: r,
        method: "GET",
        ...(url ? { url } : { path: path as string }),
        ok: [200],
        pass: [404],
      });
      if (res.status === 404) return [];
      tags.push(...((JSON.parse(res.body.toString("utf8")) as { tags?: string[] | null }).tags ?? []));
      const next = /<([^>]+)>;\s*rel="?next"?/.exec(res.headers.get("link") ?? "")?.[1];
      path = undefined;
      url = next ? new URL(next, res.url).toString() : undefined;
    }
    return tags;
  }

  /** True when the repository has this blob. */
  async blobExists(ref: string | ImageRef, digest: string): Promise<boolean> {
    const r = toRef(ref);
    const res = await this.send({
      operation: "head blob",
      ref: r,
      method: "HEAD",
      path: `blobs/${digest}`,
      ok: [200],
      pass: [404],
    });
    return res.status === 200;
  }

  /** Upload a blob in one piece (POST an upload, PUT the bytes); returns its digest. */
  async uploadBlob(ref: string | ImageRef, bytes: Buffer): Promise<string> {
    const r = toRef(ref);
    const digest = digestOf(bytes);
    if (await this.blobExists(r, digest)) return digest;
    await this.retry("push blob", r, async () => {
      const started = await this.sendOnce({
        operation: "push blob",
        ref: r,
        method: "POST",
        path: "blobs/uploads/",
        ok: [202],
      });
      const location = started.headers.get("location");
      if (!location) {
        throw new RegistryError(`push blob ${formatRef(r)}: the registry gave no upload location`, {
          ref: formatRef(r),
          operation: "push blob",
        });
      }
      const url = new URL(location, started.url);
      url.searchParams.set("digest", digest);
      const done = await this.sendOnce({
        operation: "push blob",
        ref: r,
        method: "PUT",
        url: url.toString(),
        headers: { "content-type": "application/octet-stream" },
        body: bytes,
        ok: [201, 204],
      });
      const echoed = done.headers.get("docker-content-digest");
      if (echoed && echoed !== digest) {
        throw new DigestMismatchError(`push blob ${formatRef(r)}: registry stored ${echoed}, expected ${digest}`, {
          ref: formatRef(r),
          operation: "push blob",
        });
      }
    });
    return digest;
  }

  /** GET a blob by digest (a config, a small layer); its bytes are hashed against the digest. */
  async getBlob(ref: string | ImageRef, digest: string): Promise<Buffer> {
    const r = toRef(ref);
    const res = await this.send({ operation: "get blob", ref: r, method: "GET", path: `blobs/${digest}`, ok: [200] });
    this.checkDigest(r, "get blob", digestOf(res.body), digest);
    return res.body;
  }

  /**
   * Make a blob of repository `from` (same registry) part of `ref`'s
   * repository without uploading it (the distribution API's cross-repository
   * mount). True when mounted or already there; false when the registry did
   * not mount it (then the caller copies it).
   */
  async mountBlob(ref: string | ImageRef, digest: string, from: string): Promise<boolean> {
    const r = toRef(ref);
    if (await this.blobExists(r, digest)) return true;
    const res = await this.send({
      operation: "mount blob",
      ref: r,
      method: "POST",
      path: `blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`,
      extraScope: `repository:${from}:pull`,
      ok: [201, 202],
    });
    return res.status === 201;
  }

  /** The config and layers of an image manifest, made part of `target`'s repository (mounted, or uploaded where not). */
  private async mountBlobsOf(manifest: Manifest, target: ImageRef): Promise<void> {
    const doc = JSON.parse(manifest.bytes.toString("utf8")) as { config?: { digest: string }; layers?: { digest: string }[] };
    if (!doc.config || !doc.layers) {
      throw new RegistryError(`copy manifest ${formatRef(manifest.ref)} to ${formatRef(target)}: only an image manifest is copied across repositories`, {
        ref: formatRef(target),
        operation: "copy manifest",
      });
    }
    for (const digest of [doc.config.digest, ...doc.layers.map((l) => l.digest)]) {
      if (!(await this.mountBlob(target, digest, manifest.ref.repository))) {
        await this.uploadBlob(target, await this.getBlob(manifest.ref, digest));
      }
    }
  }

  /**
   * Each platform's manifest digest in an image index (os/architecture[/variant]),
   * in the index's order; empty for a single-platform image manifest.
   */
  static platformsOf(manifest: Manifest): PlatformDigest[] {
    const doc = JSON.parse(manifest.bytes.toString("utf8")) as {
      manifests?: { digest?: string; platform?: { os?: string; architecture?: string; variant?: string } }[];
    };
    return (doc.manifests ?? []).flatMap((child) =>
      child.digest && child.platform?.os && child.platform.architecture
        ? [{ platform: [child.platform.os, child.platform.architecture, child.platform.variant].filter(Boolean).join("/"), digest: child.digest }]
        : [],
    );
  }

  /**
   * Bytes of an image: config plus layers for an image manifest; for an
   * index, the sum over its child manifests (each fetched by digest).
   */
  async imageSize(manifest: Manifest): Promise<number> {
    const doc = JSON.parse(manifest.bytes.toString("utf8")) as {
      config?: { size?: number };
      layers?: { size?: number }[];
      manifests?: { digest: string }[];
    };
    if (doc.layers) return (doc.config?.size ?? 0) + doc.layers.reduce((sum, l) => sum + (l.size ?? 0), 0);
    let total = 0;
    for (const child of (doc.manifests ?? []).slice(0, 64)) {
      const m = await this.getManifest({ registry: manifest.ref.registry, repository: manifest.ref.repository, digest: child.digest });
      total += await this.imageSize(m);
    }
    return total;
  }

  // ---- transport --------------------------------------------------------

  private checkDigest(r: ImageRef, operation: string, computed: string, expected?: string, header?: string | null) {
    if (expected && computed !== expected) {
      throw new DigestMismatchError(`${operation} ${formatRef(r)}: content hashes to ${computed}, expected ${expected}`, {
        ref: formatRef(r),
        operation,
      });
    }
    if (header && header.startsWith("sha256:") && header !== computed) {
      throw new DigestMismatchError(
        `${operation} ${formatRef(r)}: registry says ${header}, content hashes to ${computed}`,
        { ref: formatRef(r), operation },
      );
    }
  }

  private baseUrl(registry: string): string {
    const plain = this.options.plainHttp;
    const http = plain === true || (Array.isArray(plain) && plain.includes(registry));
    const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
    return `${http ? "http" : "https"}://${host}`;
  }

  private async send(op: Op): Promise<RawResponse> {
    return this.retry(op.operation, op.ref, () => this.sendOnce(op));
  }

  /**
   * `fn` under this client's retry policy (bounded, exponential, jittered; a
   * Retry-After is honoured). By default only transient registry errors are
   * retried, `retries` times; `retryAny` retries every error but a
   * `NotRetried` one (for reads whose failure would leave an outcome unknown).
   */
  retry<T>(
    operation: string,
    ref: ImageRef,
    fn: () => Promise<T>,
    options: { retries?: number; retryAny?: boolean } = {},
  ): Promise<T> {
    const maxRetryAfter = this.options.maxRetryAfterMs ?? 60_000;
    const transient = (error: unknown): error is RegistryError => error instanceof RegistryError && error.transient;
    const retryable = (error: unknown) => !(error instanceof NotRetried) && (options.retryAny === true || transient(error));
    return pRetry(fn, {
      retries: options.retries ?? this.retryPolicy.retries,
      minTimeout: this.retryPolicy.minBackoffMs,
      maxTimeout: this.retryPolicy.maxBackoffMs,
      factor: 2,
      randomize: true,
      shouldRetry: ({ error }) => retryable(error),
      onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
        if (!retryable(error) || retriesLeft <= 0) return;
        const e = error as Partial<RegistryError>;
        this.log.warn(
          { op: operation, ref: formatRef(ref), status: e.status, code: e.code, attempt: attemptNumber, retriesLeft },
          `${transient(error) ? "transient failure" : "failure"}, retrying: ${error.message}`,
        );
        if (e.retryAfterMs !== undefined) await sleep(Math.min(e.retryAfterMs, maxRetryAfter));
      },
    });
  }

  private scopeFor(op: Op): string {
    const actions = op.method === "GET" || op.method === "HEAD" ? "pull" : op.method === "DELETE" ? "delete" : "pull,push";
    return `repository:${op.ref.repository}:${actions}${op.extraScope ? ` ${op.extraScope}` : ""}`;
  }

  /** One attempt, including at most two authentication rounds. */
  private async sendOnce(op: Op): Promise<RawResponse> {
    const url = op.url ?? `${this.baseUrl(op.ref.registry)}/v2/${op.ref.repository}/${op.path ?? ""}`;
    const host = op.ref.registry;
    const wanted = this.scopeFor(op);
    let authorization = await this.cachedAuthorization(host, wanted, op);
    let sentScope: string | undefined = authorization ? wanted : undefined;
    // A cached token may have expired early at the registry: it earns one fresh fetch.
    let fresh = false;
    for (let round = 0; ; round++) {
      const res = await this.fetchRaw(op, url, authorization);
      if (res.status !== 401) return this.judge(op, res);
      const challenge = parseChallenge(res.headers.get("www-authenticate"));
      if (!challenge || round >= 2) throw this.authFailure(op, res, "the registry rejected the credentials");
      if (challenge.scheme === "basic") {
        if (!this.username || !this.password) throw this.authFailure(op, res, "the registry requires a username and password");
        if (authorization?.startsWith("Basic ")) throw this.authFailure(op, res, "the registry rejected the username or password");
        this.hostAuth.set(host, { kind: "basic" });
        authorization = this.basicHeader();
        continue;
      }
      const realm = challenge.params.realm;
      if (!realm) throw this.authFailure(op, res, "the bearer challenge names no token realm");
      const challenged = challenge.params.scope ?? wanted;
      const scope = op.extraScope && !challenged.includes(op.extraScope) ? `${challenged} ${op.extraScope}` : challenged;
      if (sentScope !== undefined && sameScope(sentScope, scope) && fresh) {
        throw this.authFailure(
          op,
          res,
          challenge.params.error === "insufficient_scope"
            ? `the token lacks the scope ${scope}`
            : "the registry rejected the bearer token",
        );
      }
      this.hostAuth.set(host, { kind: "bearer", realm, service: challenge.params.service });
      const token = await this.fetchToken(op, realm, challenge.params.service, scope, sentScope !== undefined && sameScope(sentScope, scope));
      fresh = true;
      this.tokens.set(this.tokenKey(realm, challenge.params.service, wanted), token);
      authorization = `Bearer ${token.token}`;
      sentScope = scope;
    }
  }

  private basicHeader(): string {
    return `Basic ${Buffer.from(`${this.username}:${this.password}`).toString("base64")}`;
  }

  private tokenKey(realm: string, service: string | undefined, scope: string): string {
    return `${realm}|${service ?? ""}|${scope}`;
  }

  /** An Authorization header for a host whose scheme is already known, if any. */
  private async cachedAuthorization(host: string, scope: string, op: Op): Promise<string | undefined> {
    const auth = this.hostAuth.get(host);
    if (!auth) return undefined;
    if (auth.kind === "basic") return this.basicHeader();
    const key = this.tokenKey(auth.realm, auth.service, scope);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    const token = await this.fetchToken(op, auth.realm, auth.service, scope);
    this.tokens.set(key, token);
    return `Bearer ${token.token}`;
  }

  /** The token service's answer for one scope (basic credentials if we have them). */
  private async fetchToken(
    op: Op,
    realm: string,
    service: string | undefined,
    scope: string,
    force = false,
  ): Promise<{ token: string; expiresAt: number }> {
    const key = this.tokenKey(realm, service, scope);
    const cached = this.tokens.get(key);
    if (!force && cached && cached.expiresAt > Date.now()) return cached;
    const url = new URL(realm);
    if (service) url.searchParams.set("service", service);
    for (const s of scope.split(" ").filter(Boolean)) url.searchParams.append("scope", s);
    if (this.username) url.searchParams.set("account", this.username);
    const headers: Record<string, string> = {};
    if (this.username && this.password) headers.authorization = this.basicHeader();
    const tokenOp: Op = { operation: `${op.operation} (token)`, ref: op.ref, method: "GET", ok: [200] };
    const res = await this.fetchRaw(tokenOp, url.toString(), headers.authorization);
    if (res.status === 401 || res.status === 403) {
      throw new RegistryAuthError(
        `${op.operation} ${formatRef(op.ref)}: authentication failed: the token service ${url.origin}${url.pathname} ` +
          `answered ${res.status} for user ${JSON.stringify(this.username ?? "(anonymous)")} ` +
          `(check the username and password or token, and its registry scopes)`,
        { ref: formatRef(op.ref), operation: op.operation, status: res.status },
      );
    }
    if (res.status !== 200) {
      const transient = res.status >= 500 || res.status === 429;
      throw new RegistryError(
        `${op.operation} ${formatRef(op.ref)}: the token service answered ${res.status}`,
        {
          ref: formatRef(op.ref),
          operation: op.operation,
          status: res.status,
          transient,
          ...(transient ? retryAfterField(res.headers) : {}),
        },
      );
    }
    let doc: { token?: string; access_token?: string; expires_in?: number };
    try {
      doc = JSON.parse(res.body.toString("utf8")) as typeof doc;
    } catch {
      throw new RegistryError(`${op.operation} ${formatRef(op.ref)}: the token service sent no JSON`, {
        ref: formatRef(op.ref),
        operation: op.operation,
      });
    }
    const token = doc.token ?? doc.access_token;
    if (!token) {
      throw new RegistryError(`${op.operation} ${formatRef(op.ref)}: the token service sent no token`, {
        ref: formatRef(op.ref),
        operation: op.operation,
      });
    }
    registerSecret(token);
    const lifetime = Math.max(60, doc.expires_in ?? 60) * 1000;
    const entry = { token, expiresAt: Date.now() + lifetime - 10_000 };
    this.tokens.set(key, entry);
    return entry;
  }

  private async fetchRaw(op: Op, url: string, authorization: string | undefined): Promise<RawResponse> {
    const headers: Record<string, string> = { "user-agent": this.options.userAgent ?? "slinky-containers", ...op.headers };
    if (authorization) headers.authorization = authorization;
    return this.limit(async () => {
      this.requests++;
      try {
        const res = await fetch(url, {
          method: op.method,
          headers,
          ...(op.body ? { body: new Uint8Array(op.body) } : {}),
          signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 120_000),
        });
        const body = op.method === "HEAD" ? Buffer.alloc(0) : Buffer.from(await res.arrayBuffer());
        this.log.debug({ method: op.method, url: redactUrl(url), status: res.status }, "registry request");
        return { status: res.status, headers: res.headers, body, url: res.url || url };
      } catch (error) {
        const code = networkErrorCode(error) ?? `network error (${error instanceof Error ? error.message : String(error)})`;
        const transient = TRANSIENT_CODES.has(code);
        this.log.debug({ method: op.method, url: redactUrl(url), code }, "registry request failed");
        throw new RegistryError(
          `${op.operation} ${formatRef(op.ref)}: ${code} talking to ${new URL(url).host}` +
            (transient ? "" : " (not retried)"),
          { ref: formatRef(op.ref), operation: op.operation, code, transient },
        );
      }
    });
  }

  private judge(op: Op, res: RawResponse): RawResponse {
    if (op.ok.includes(res.status) || op.pass?.includes(res.status)) return res;
    const ref = formatRef(op.ref);
    const { code, text } = registryErrorText(res.body);
    const detail = text ? ` (${text})` : "";
    const fields = { ref, operation: op.operation, status: res.status, ...(code ? { code } : {}) };
    if (res.status === 403) {
      throw new RegistryAuthError(
        `${op.operation} ${ref}: permission denied (403)${detail}: user ${JSON.stringify(this.username ?? "(anonymous)")} ` +
          `may not do this here; check the token's registry scopes`,
        fields,
      );
    }
    if (res.status === 404) {
      throw new RegistryNotFoundError(`${op.operation} ${ref}: not found (404)${detail}`, fields);
    }
    const transient = res.status === 429 || res.status === 408 || (res.status >= 500 && res.status !== 501 && res.status !== 505);
    throw new RegistryError(`${op.operation} ${ref}: the registry answered ${res.status}${detail}`, {
      ...fields,
      transient,
      ...(transient ? retryAfterField(res.headers) : {}),
    });
  }

  private authFailure(op: Op, res: RawResponse, why: string): RegistryAuthError {
    const { code } = registryErrorText(res.body);
    return new RegistryAuthError(
      `${op.operation} ${formatRef(op.ref)}: authentication failed (401): ${why} ` +
        `for user ${JSON.stringify(this.username ?? "(anonymous)")}`,
      { ref: formatRef(op.ref), operation: op.operation, status: 401, ...(code ? { code } : {}) },
    );
  }
}

function retryAfterField(headers: Headers): { retryAfterMs?: number } {
  const ms = parseRetryAfter(headers.get("retry-after"));
  return ms === undefined ? {} : { retryAfterMs: ms };
}

/** Upload URLs carry opaque state; keep logs to scheme, host and path. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return "(url)";
  }
}

function manifestMediaType(contentType: string | null, body: Buffer): string {
  const header = (contentType ?? "").split(";")[0]?.trim() ?? "";
  if (header && header !== "application/json" && header !== "text/plain" && header !== "application/octet-stream") {
    return header;
  }
  try {
    const doc = JSON.parse(body.toString("utf8")) as { mediaType?: string; manifests?: unknown };
    if (doc.mediaType) return doc.mediaType;
    return doc.manifests ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
  } catch {
    return header || MEDIA_TYPES.ociManifest;
  }
}
