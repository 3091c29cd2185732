/**
 * Image references and content digests: parsing and formatting
 * `[host[:port]/]path[:tag][@digest]` (docker.io's defaults included), the
 * repository under a registry path, and the digest of exact bytes.
 */
import { createHash } from "node:crypto";
import { TAG_PATTERN } from "../core/tags.js";
import { noTrailingSlash } from "../core/inputs.js";

export const DOCKER_HUB = "docker.io";
export const DOCKER_HUB_API = "registry-1.docker.io";

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
  const ref = parseRef(`${noTrailingSlash(registryPath)}/${name}`);
  return { registry: ref.registry, repository: ref.repository };
}

export function toRef(ref: string | ImageRef): ImageRef {
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

