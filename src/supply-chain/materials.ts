/**
 * The materials of one image on one platform: every pinned input its build
 * fetches (the Slurm and pyxis sources, enroot, kubectl, the NVIDIA key and
 * repository) and its base image, each with its URL, version and sha256, as
 * the manifest pins them for that platform. The SBOM lists those the image
 * holds; the provenance lists them all. Pure data from build/plan.ts, no engine.
 */
import { readFileSync } from "node:fs";
import type { ImageSpec, InputName } from "../core/catalog.js";
import { REFERENCE_RE } from "../core/inputs.js";
import type { Manifest } from "../core/manifest.js";
import { downloadsOf, nvidiaRepository, type Resolved } from "../build/plan.js";
import { DEFAULT_PLATFORM, type PlatformName } from "../core/platform.js";

/** This module's name, as in package.json and dagger.json. */
export const MODULE_NAME = "slinky-containers";

/** This module's version (package.json), e.g. 0.1.0. */
export function moduleVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
  if (typeof pkg.version !== "string" || pkg.version === "") throw new Error("package.json has no version");
  return pkg.version;
}

export type MaterialName = "baseImage" | "slurm" | InputName | "nvidiaToolkit";

export interface Material {
  /** The manifest's name: slurm, pyxis, enroot, enrootCaps, kubectl, nvidiaKey, nvidiaToolkit, baseImage. */
  readonly name: MaterialName;
  readonly version: string;
  /** What is fetched: a download URL, an apt repository, or an image name[:tag] (no digest). */
  readonly uri: string;
  /** The pinned sha256 (for the base image: its digest's hex), or null when nothing pins it. */
  readonly sha256: string | null;
  /** A signing key's OpenPGP fingerprint, when the key is pinned by it. */
  readonly fingerprint?: string;
  readonly kind: "download" | "apt-repository" | "image";
  /** The image holds it or what was built from it (the SBOM lists these; the provenance lists every material). */
  readonly inImage: boolean;
}

/** The inputs whose content (or what is built from them) an image holds; the NVIDIA key is only mounted during the build. */
const HELD: ReadonlySet<string> = new Set(["slurm", "pyxis", "enroot", "enrootCaps", "kubectl"]);

export interface MaterialOptions {
  /** The base image's digest when the manifest pins none (resolved at run time, as the build cache does). */
  readonly baseDigest?: string;
}

/**
 * The materials of `image` built for `platform`, sorted by name. The Slurm
 * and pyxis sources are fetched by the package set every image is built
 * from (plan.downloadsOf); pyxis is held only by the images that install it.
 */
export function imageMaterials(
  manifest: Manifest,
  resolved: Resolved,
  image: ImageSpec,
  platform: PlatformName = DEFAULT_PLATFORM,
  options: MaterialOptions = {},
): Material[] {
  const digest = resolved.flavor.baseDigest ?? options.baseDigest ?? null;
  if (digest !== null && !/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`base image digest ${JSON.stringify(digest)} is not sha256:<64 hex>`);
  if (resolved.flavor.baseDigest && options.baseDigest && options.baseDigest !== resolved.flavor.baseDigest) {
    throw new Error(`base image digest ${options.baseDigest} differs from the manifest's pin ${resolved.flavor.baseDigest}`);
  }
  const materials: Material[] = [
    {
      name: "baseImage",
      version: REFERENCE_RE.exec(resolved.flavor.baseImage)?.[2] ?? "latest",
      uri: resolved.flavor.baseImage,
      sha256: digest ? digest.slice("sha256:".length) : null,
      kind: "image",
      inImage: true,
    },
  ];
  for (const [name, download] of Object.entries(downloadsOf(manifest, resolved, image, platform))) {
    const inImage = HELD.has(name) && (name === "slurm" || image.inputs.includes(name as InputName));
    materials.push({
      name: name as MaterialName,
      version: download.version,
      uri: download.url,
      sha256: download.sha256,
      ...(download.fingerprint ? { fingerprint: download.fingerprint } : {}),
      kind: "download",
      inImage,
    });
  }
  const repository = image.inputs.includes("nvidiaKey") ? nvidiaRepository(manifest, platform) : null;
  if (repository) {
    materials.push({ name: "nvidiaToolkit", version: manifest.nvidiaToolkit.version, uri: repository, sha256: null, kind: "apt-repository", inImage: false });
  }
  return materials.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
