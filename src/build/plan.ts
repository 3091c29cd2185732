/**
 * The plan: from the user's inputs and the manifest to what would be built,
 * with which build arguments and labels, under which references. Pure data,
 * no engine: `plan`, `build` and the local harness all start here.
 */
import { type GroupName, type ImageSpec, type InputName, imageSpec, imagesOf } from "../core/catalog.js";
import { checkField, checkInputs, InvalidInputError, lookup, noTrailingSlash } from "../core/inputs.js";
import { gpuBuildArgs } from "../core/gpu.js";
import { splitPlatforms } from "../core/platform.js";
import type { Download, Flavor, Manifest } from "../core/manifest.js";
import { archOf, DEFAULT_PLATFORM, type PlatformName, sortPlatforms } from "../core/platform.js";
import { type BranchTags, branchTags, refSlug, sha8 } from "../core/tags.js";

export interface Selection {
  /** Slurm release line (25.11) or its pinned patch release (25.11.2). */
  readonly slurmVersion?: string;
  readonly flavor?: string;
  /** A group; ignored when `image` is given. */
  readonly group?: string;
  readonly image?: string;
  /** Comma-separated platforms (linux/amd64,linux/arm64); default: the manifest's defaults.platforms. */
  readonly platforms?: string;
}

export interface Resolved {
  readonly line: string;
  readonly slurm: Download;
  readonly flavorName: string;
  readonly flavor: Flavor;
  /** The group asked for, or null when one image was asked for. */
  readonly group: GroupName | null;
  /** Catalog order: an image always after the one it builds on. */
  readonly images: readonly ImageSpec[];
  /** The platforms to build, linux/amd64 first. */
  readonly platforms: readonly PlatformName[];
}

/**
 * Resolves the user's choices against the manifest and the catalog, refusing
 * unknown values. Names are looked up as own keys only (`__proto__`,
 * `constructor`, `toString` are unknown, not inherited).
 */
export function resolve(manifest: Manifest, selection: Selection = {}): Resolved {
  checkInputs({
    slurmVersion: selection.slurmVersion,
    flavor: selection.flavor,
    group: selection.image === undefined ? selection.group : undefined,
    image: selection.image,
    platforms: selection.platforms,
  });
  const asked = selection.slurmVersion ?? manifest.defaults.slurmVersion;
  const line = Object.keys(manifest.slurm).find(
    (key) => key === asked || manifest.slurm[key]?.version === asked,
  );
  const slurm = line === undefined ? undefined : manifest.slurm[line];
  if (line === undefined || slurm === undefined) {
    const valid = Object.entries(manifest.slurm).flatMap(([key, release]) => [key, release.version]);
    throw new InvalidInputError("Slurm version", asked, valid);
  }
  const flavorName = selection.flavor ?? manifest.defaults.flavor;
  const flavor = lookup("flavor", manifest.flavors, flavorName);
  const platformsAsked = selection.platforms === undefined ? manifest.defaults.platforms : (splitPlatforms(selection.platforms) as PlatformName[]);
  for (const platform of platformsAsked) {
    if (!flavor.platforms.includes(platform)) {
      throw new InvalidInputError("platforms", selection.platforms ?? platform, flavor.platforms, `flavor ${flavorName} is not built for ${platform} (its base image's platforms, flavors.${flavorName}.platforms in the manifest)`);
    }
  }
  const platforms = sortPlatforms(platformsAsked);
  if (selection.image !== undefined) {
    return { line, slurm, flavorName, flavor, group: null, images: [imageSpec(selection.image)], platforms };
  }
  const group = (selection.group ?? manifest.defaults.group) as GroupName;
  return { line, slurm, flavorName, flavor, group, images: imagesOf(group), platforms };
}

/** Inputs whose file differs by architecture: their url and sha256 are linux/amd64's, `arch` holds the others. */
export const ARCH_INPUTS: readonly InputName[] = ["enroot", "enrootCaps", "kubectl"];

/**
 * A download's file for one platform. Downloads that do not differ by
 * architecture (sources, the signing key) are the same for every platform;
 * the others take `arch.<arch>`, and linux/amd64 falls back to url and sha256.
 * An architecture with no entry has no pin (url kept, sha256 null).
 */
export function downloadFor(name: string, download: Download, platform: PlatformName = DEFAULT_PLATFORM): Download {
  if (!(ARCH_INPUTS as readonly string[]).includes(name)) return download;
  const arch = archOf(platform);
  const pin = download.arch?.[arch];
  if (pin) return { version: download.version, ...pin };
  if (arch === "amd64") return download;
  return { version: download.version, url: download.url, sha256: null, checksumSource: `no ${arch} file is pinned (arch.${arch} in the manifest)` };
}

/** The NVIDIA toolkit's apt repository path for a platform. */
export function nvidiaRepository(manifest: Manifest, platform: PlatformName = DEFAULT_PLATFORM): string | null {
  const arch = archOf(platform);
  return manifest.nvidiaToolkit.arch?.[arch]?.repository ?? (arch === "amd64" ? manifest.nvidiaToolkit.repository : null);
}

/**
 * The downloads an image's build fetches, by name: the package set
 * (Dockerfile.packages) always fetches the Slurm and pyxis sources.
 */
export function downloadsOf(manifest: Manifest, resolved: Resolved, image: ImageSpec, platform: PlatformName = DEFAULT_PLATFORM): Record<string, Download> {
  const inputs = Object.fromEntries(image.inputs.map((name: InputName) => [name, downloadFor(name, manifest.inputs[name], platform)]));
  return { slurm: resolved.slurm, pyxis: manifest.inputs.pyxis, ...inputs };
}

/** What the error's example site manifest pins for a missing name ("inputs.kubectl (linux/arm64)"). */
function example(missing: string): string {
  const m = /^inputs\.(\w+)(?: \(linux\/(\w+)\))?$/.exec(missing);
  if (!m) return '{"slurm": {"<line>": {"sha256": "<64 hex>"}}}';
  const [, name, arch] = m;
  return arch && arch !== "amd64"
    ? `{"inputs": {"${name}": {"arch": {"${arch}": {"url": "<url>", "sha256": "<64 hex>"}}}}}`
    : `{"inputs": {"${name}": {"sha256": "<64 hex>"}}}`;
}

export class MissingChecksumError extends Error {
  constructor(missing: readonly string[]) {
    super(
      `no sha256 is pinned for ${missing.join(", ")}: refusing to build with an unchecked download. ` +
        "Supply the checksum in a site manifest (dagger call --manifest site.json ...), e.g. " +
        example(missing[0] ?? ""),
    );
    this.name = "MissingChecksumError";
  }
}

/**
 * Names of the downloads the resolved images need, on the resolved
 * platforms, that nothing pins (no sha256, nor a fingerprint for a key),
 * e.g. "inputs.pyxis" or, for a download that differs by architecture,
 * "inputs.kubectl (linux/arm64)".
 */
export function missingChecksums(manifest: Manifest, resolved: Resolved): string[] {
  const missing = new Set<string>();
  for (const platform of resolved.platforms) {
    for (const image of resolved.images) {
      for (const [name, download] of Object.entries(downloadsOf(manifest, resolved, image, platform))) {
        if (download.sha256 !== null || download.fingerprint) continue;
        if (name === "slurm") missing.add(`slurm.${resolved.line}`);
        else missing.add((ARCH_INPUTS as readonly string[]).includes(name) ? `inputs.${name} (${platform})` : `inputs.${name}`);
      }
    }
    if (resolved.images.some((image) => image.inputs.includes("nvidiaKey")) && nvidiaRepository(manifest, platform) === null) {
      missing.add(`nvidiaToolkit.arch.${archOf(platform)}.repository (${platform})`);
    }
  }
  return [...missing];
}

/** Refuses, before anything is built, a build that would fetch an unchecked download. */
export function requireChecksums(manifest: Manifest, resolved: Resolved): void {
  const missing = missingChecksums(manifest, resolved);
  if (missing.length > 0) throw new MissingChecksumError(missing);
}

/** The base image reference, by digest when one is pinned. */
export function baseImageRef(flavor: Flavor): string {
  return flavor.baseDigest ? `${flavor.baseImage}@${flavor.baseDigest}` : flavor.baseImage;
}

/**
 * The Dockerfile's build arguments for one platform (each architecture's
 * enroot, kubectl and NVIDIA repository). An unknown checksum is passed
 * empty, so that download fails. `baseImage` replaces the flavor's base
 * reference (the build cache's base by digest, when the manifest pins none).
 */
export function buildArgs(
  manifest: Manifest,
  resolved: Resolved,
  platform: PlatformName = DEFAULT_PLATFORM,
  baseImage?: string,
): Record<string, string> {
  const { pyxis, nvidiaKey } = manifest.inputs;
  const enroot = downloadFor("enroot", manifest.inputs.enroot, platform);
  const enrootCaps = downloadFor("enrootCaps", manifest.inputs.enrootCaps, platform);
  const kubectl = downloadFor("kubectl", manifest.inputs.kubectl, platform);
  return {
    BASE_IMAGE: baseImage ?? baseImageRef(resolved.flavor),
    SLURM_VERSION: resolved.slurm.version,
    SLURM_URL: resolved.slurm.url,
    SLURM_SHA256: resolved.slurm.sha256 ?? "",
    PYXIS_VERSION: pyxis.version,
    PYXIS_URL: pyxis.url,
    PYXIS_SHA256: pyxis.sha256 ?? "",
    ENROOT_VERSION: enroot.version,
    ENROOT_URL: enroot.url,
    ENROOT_SHA256: enroot.sha256 ?? "",
    ENROOT_CAPS_URL: enrootCaps.url,
    ENROOT_CAPS_SHA256: enrootCaps.sha256 ?? "",
    KUBECTL_VERSION: kubectl.version,
    KUBECTL_URL: kubectl.url,
    KUBECTL_SHA256: kubectl.sha256 ?? "",
    NVIDIA_KEY_URL: nvidiaKey.url,
    NVIDIA_KEY_SHA256: nvidiaKey.sha256 ?? "",
    NVIDIA_KEY_FINGERPRINT: nvidiaKey.fingerprint ?? "",
    NVIDIA_REPO_URL: nvidiaRepository(manifest, platform) ?? "",
    NVIDIA_TOOLKIT_VERSION: manifest.nvidiaToolkit.version,
    CROSS_APT_URIS: resolved.flavor.aptArchives?.[archOf(platform)] ?? "",
    ...gpuBuildArgs(resolved.flavor, platform),
  };
}

export interface Provenance {
  /** The commit the image is built from. */
  readonly revision?: string;
  /** RFC 3339 time of the build (or of the commit, for reproducible labels). */
  readonly created?: string;
}

/** The OCI labels of one image; provenance labels only when known. */
export function imageLabels(
  manifest: Manifest,
  resolved: Resolved,
  image: ImageSpec,
  provenance: Provenance = {},
): Record<string, string> {
  const oci = "org.opencontainers.image";
  const labels: Record<string, string> = {
    [`${oci}.title`]: image.title,
    [`${oci}.description`]: image.description,
    [`${oci}.version`]: resolved.slurm.version,
    [`${oci}.vendor`]: manifest.project.vendor,
    [`${oci}.source`]: manifest.project.source,
    [`${oci}.documentation`]: manifest.project.documentation,
    [`${oci}.licenses`]: manifest.project.licenses,
    [`${oci}.base.name`]: resolved.flavor.baseImage,
  };
  if (resolved.flavor.baseDigest) labels[`${oci}.base.digest`] = resolved.flavor.baseDigest;
  if (provenance.revision) labels[`${oci}.revision`] = provenance.revision;
  if (provenance.created) {
    const error = checkField("commitTimestamp", provenance.created);
    if (error) throw error;
    labels[`${oci}.created`] = provenance.created;
  }
  return labels;
}

/** Where a run pushes: all three optional together make a local build. */
export interface Destination {
  readonly branch?: string;
  readonly sha?: string;
  readonly registry?: string;
  readonly defaultBranch?: string;
}

/** A registry path images are pushed under, e.g. registry.example.com:5000/group/project, without a trailing "/". */
export function checkRegistry(registry: string): string {
  const error = checkField("registry", registry);
  if (error) throw error;
  return noTrailingSlash(registry);
}

/** The tags of a run, or null for a local build; refuses half-given destinations. */
export function runTags(resolved: Resolved, destination: Destination): BranchTags | null {
  const { branch, sha, registry } = destination;
  if (!branch) {
    if (sha || registry) throw new Error("--sha and --registry need --branch: name the branch the images are built from");
    return null;
  }
  if (!sha) throw new Error("--branch needs --sha: the commit the images are built from");
  if (!registry) throw new Error("--branch needs --registry: where the images are pushed");
  checkInputs({ branch, commitSha: sha, registry, defaultBranch: destination.defaultBranch });
  return branchTags({
    line: resolved.line,
    flavor: resolved.flavorName,
    branch,
    sha,
    defaultBranch: destination.defaultBranch ?? "main",
  });
}

export interface PlannedImage {
  readonly name: string;
  readonly target: string;
  readonly title: string;
  readonly group: string;
  readonly buildsOn: string | null;
  /** Every reference this run pushes or tags, commit tag first. */
  readonly references: string[];
  /** Production references this run moves after every image is checked. */
  readonly promotes: string[];
}

export interface PlanDocument {
  readonly slurm: { line: string; version: string; url: string; sha256: string | null };
  readonly flavor: { name: string; family: string; baseImage: string };
  readonly group: string | null;
  readonly branch: string | null;
  readonly slug: string | null;
  readonly sha8: string | null;
  readonly defaultBranch: string;
  readonly registry: string | null;
  /** The platforms built; with more than one, every tag points at an image index holding them all. */
  readonly platforms: readonly PlatformName[];
  /** Each platform's build arguments (they differ in enroot, kubectl and the NVIDIA repository). */
  readonly buildArgs: Readonly<Record<string, Record<string, string>>>;
  readonly missingChecksums: string[];
  readonly images: PlannedImage[];
}

/** What a run would build and push, without building anything. */
export function plan(manifest: Manifest, selection: Selection, destination: Destination = {}): PlanDocument {
  checkInputs({
    branch: destination.branch,
    commitSha: destination.sha,
    registry: destination.registry,
    defaultBranch: destination.defaultBranch,
  }, ["branch"]);
  const resolved = resolve(manifest, selection);
  const registry = destination.registry ? checkRegistry(destination.registry) : undefined;
  const tags = runTags(resolved, { ...destination, registry });
  const ref = (image: string, tag: string) => `${registry}/${image}:${tag}`;
  return {
    slurm: { line: resolved.line, version: resolved.slurm.version, url: resolved.slurm.url, sha256: resolved.slurm.sha256 },
    flavor: { name: resolved.flavorName, family: resolved.flavor.family, baseImage: baseImageRef(resolved.flavor) },
    group: resolved.group,
    branch: destination.branch ?? null,
    slug: destination.branch ? refSlug(destination.branch) : null,
    sha8: destination.sha ? sha8(destination.sha) : null,
    defaultBranch: destination.defaultBranch ?? "main",
    registry: registry ?? null,
    platforms: resolved.platforms,
    buildArgs: Object.fromEntries(resolved.platforms.map((platform) => [platform, buildArgs(manifest, resolved, platform)])),
    missingChecksums: missingChecksums(manifest, resolved),
    images: resolved.images.map((image) => ({
      name: image.name,
      target: image.target,
      title: image.title,
      group: image.group,
      buildsOn: image.buildsOn,
      references: tags ? [ref(image.name, tags.commit), ref(image.name, tags.branchLatest)] : [],
      promotes: tags?.production ? [ref(image.name, tags.production)] : [],
    })),
  };
}
