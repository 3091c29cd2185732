/**
 * A small client for the OCI distribution API (the registry HTTP API v2).
 *
 * It reads, writes and copies manifests by their exact bytes, so a manifest
 * copied under a new tag keeps its digest. Authentication (basic and bearer
 * token challenges) is auth.ts's, the HTTP and the one retry policy are
 * transport.ts's: transient failures (5xx, 429 with `Retry-After`, connection
 * resets, timeouts) are retried with bounded backoff; authentication,
 * permission and not-found errors never are. The password is used only in
 * request headers; it never appears in an error message or a log line.
 */
import { silentLogger, type Logger } from "../core/log.js";
import { Authenticator } from "./auth.js";
import { DigestMismatchError, RegistryError } from "./errors.js";
import { digestOf, formatRef, type ImageRef, toRef } from "./reference.js";
import { type Op, type RawResponse, type RetryPolicy, retryPolicyOf, Transport, withRetries } from "./transport.js";

export const MEDIA_TYPES = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
} as const;

/** Accept header for manifest requests: OCI and Docker, images and indexes. */
export const MANIFEST_ACCEPT = Object.values(MEDIA_TYPES).join(", ");

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

/** An OCI distribution API client for one set of credentials. */
export class RegistryClient {
  private readonly log: Logger;
  private readonly transport: Transport;
  private readonly auth: Authenticator;
  /** How transient failures are retried (what promotion's rollback retries with, too). */
  readonly retryPolicy: RetryPolicy;

  constructor(options: RegistryClientOptions = {}) {
    const username = options.username || undefined;
    this.log = options.logger ?? silentLogger();
    this.transport = new Transport(options, this.log, username);
    this.auth = new Authenticator(this.transport, username, options.password || undefined);
    this.retryPolicy = retryPolicyOf(options);
  }

  /** HTTP requests sent (registry and token service), for figures and tests. */
  get requests(): number {
    return this.transport.requests;
  }

  /** GET a manifest by tag or digest; its digest is computed from the exact bytes and checked. */
  async getManifest(ref: string | ImageRef): Promise<Manifest> {
    const r = toRef(ref);
    const res = await this.send({
      operation: "get manifest",
      ref: r,
      method: "GET",
      path: manifestReadPath(r),
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
      path: manifestReadPath(r),
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

  // ---- one request --------------------------------------------------------

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

  private send(op: Op): Promise<RawResponse> {
    return this.retry(op.operation, op.ref, () => this.sendOnce(op));
  }

  private sendOnce(op: Op): Promise<RawResponse> {
    return this.auth.send(op);
  }

  /** `fn` under this client's retry policy (transport.ts's withRetries). */
  retry<T>(operation: string, ref: ImageRef, fn: () => Promise<T>, options: { retries?: number; retryAny?: boolean } = {}): Promise<T> {
    return withRetries(this.retryPolicy, this.log, operation, ref, fn, options);
  }
}

/** Where a read (GET or HEAD) of `r`'s manifest goes: its digest when it has one, else its tag. */
function manifestReadPath(r: ImageRef): string {
  return `manifests/${r.digest ?? r.tag ?? "latest"}`;
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
