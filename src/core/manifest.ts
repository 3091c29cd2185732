/**
 * The manifest: Slurm release lines, Linux flavors and pinned downloads, as
 * data in manifest.json. A site may lay a partial manifest over it (mirrors,
 * newer patch releases, checksums); the result is validated with zod.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { GROUP_NAMES, INPUT_NAMES } from "./catalog.js";
import { referenceProblem } from "./inputs.js";
import { DEFAULT_PLATFORM, PLATFORM_NAMES } from "./platform.js";

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters");
/** An http(s) URL without credentials (a mirror's password belongs in a secret, not a manifest). */
const httpUrl = z
  .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
  .refine((value) => {
    // Not a URL at all: the check above says so (zod runs this refinement too).
    if (!URL.canParse(value)) return true;
    const url = new URL(value);
    return url.username === "" && url.password === "";
  }, "must not hold credentials (user:password@): serve the download without them or from a mirror that needs none");

/** One architecture's file of a download that differs by architecture. */
export const ArchPinSchema = z.strictObject({
  url: httpUrl,
  sha256: sha256.nullable(),
  /** Where the checksum comes from, or why it is missing. */
  checksumSource: z.string().optional(),
});
export type ArchPin = z.infer<typeof ArchPinSchema>;

/** Per-architecture files: `arch.arm64` is linux/arm64's; `arch.amd64`, when given, replaces url and sha256 for linux/amd64. */
const ArchMapSchema = z.strictObject({ amd64: ArchPinSchema.optional(), arm64: ArchPinSchema.optional() });

/**
 * One pinned download. `sha256: null` says the checksum is not known yet.
 * For a download that differs by architecture (enroot, kubectl), url and
 * sha256 are linux/amd64's and `arch` holds the others.
 */
export const DownloadSchema = z.strictObject({
  version: z.string().min(1),
  url: httpUrl,
  sha256: sha256.nullable(),
  arch: ArchMapSchema.optional(),
  /** For a signing key: its OpenPGP fingerprint, checked when no sha256 is pinned. */
  fingerprint: z
    .string()
    .regex(/^[0-9A-F]{40}$/, "must be 40 uppercase hex characters")
    .optional(),
  /** Where the checksum comes from, or why it is missing. */
  checksumSource: z.string().optional(),
});
export type Download = z.infer<typeof DownloadSchema>;

/** Slurm's GPU plugins that need a vendor library at build time (gpu/nvml, gpu/rsmi, gpu/oneapi). */
export const GPU_PLUGIN_NAMES = ["nvml", "rsmi", "oneapi"] as const;
export type GpuPluginName = (typeof GPU_PLUGIN_NAMES)[number];

const aptPackage = z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/, "must be a Debian package name");

/** One GPU plugin's packages, from the flavor's own archive. */
export const GpuPluginSchema = z.strictObject({
  /** What the compile needs: the headers and the library configure links against. */
  build: z.array(aptPackage).min(1),
  /** What the slurmd images install: the runtime library slurmd loads for the plugin. */
  node: z.array(aptPackage).default([]),
  /** The platforms whose archive has the packages (default: all the flavor's); [] builds it nowhere. */
  platforms: z.array(z.enum(PLATFORM_NAMES)).optional(),
});
export type GpuPlugin = z.infer<typeof GpuPluginSchema>;

/** The flavor's GPU plugins and the apt components the compile adds for them. */
export const GpuSchema = z.strictObject({
  /** Components added to the base image's apt sources in the compile's stages only (Debian: contrib, non-free). */
  buildComponents: z.array(z.string().regex(/^[a-z][a-z-]*$/, "must be an apt component like non-free")).default([]),
  plugins: z.partialRecord(z.enum(GPU_PLUGIN_NAMES), GpuPluginSchema).default({}),
});
export type Gpu = z.infer<typeof GpuSchema>;

export const FlavorSchema = z.strictObject({
  /** Selects dockerfiles/<family>/Dockerfile. */
  family: z.enum(["debian"]),
  description: z.string().min(1),
  /** name[:tag] by the OCI reference grammar; the digest goes in baseDigest. */
  baseImage: z.string().superRefine((value, ctx) => {
    const why = referenceProblem(value, { digest: false });
    if (why) ctx.addIssue({ code: "custom", message: `not an image reference: ${why}` });
  }),
  baseDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/).nullable(),
  /** Where the digest comes from. */
  digestSource: z.string().optional(),
  /** The platforms this flavor can be built for (its base image has them). */
  platforms: z.array(z.enum(PLATFORM_NAMES)).min(1).default([DEFAULT_PLATFORM]),
  /**
   * The apt archive (deb822 URIs) serving an architecture's packages when the
   * package set is cross-compiled for it on a build machine of another
   * architecture: the target's libraries come from it. Ubuntu serves arm64 from
   * its ports archive, amd64 from its main archive; Debian serves every
   * architecture from one mirror (no entry: the base image's sources serve it).
   */
  aptArchives: z.strictObject({ amd64: httpUrl.optional(), arm64: httpUrl.optional() }).optional(),
  /** Slurm's GPU plugins built for this flavor (none when absent). */
  gpu: GpuSchema.optional(),
});
export type Flavor = z.infer<typeof FlavorSchema>;

const inputsShape = Object.fromEntries(INPUT_NAMES.map((name) => [name, DownloadSchema])) as Record<
  (typeof INPUT_NAMES)[number],
  typeof DownloadSchema
>;

export const ManifestSchema = z
  .strictObject({
    /** Who makes the images and where their source lives: OCI labels. */
    project: z.strictObject({
      vendor: z.string().min(1),
      source: httpUrl,
      documentation: httpUrl,
      licenses: z.string().min(1),
    }),
    defaults: z.strictObject({
      slurmVersion: z.string(),
      flavor: z.string(),
      group: z.enum(GROUP_NAMES),
      /** The platforms a run builds unless told otherwise. */
      platforms: z.array(z.enum(PLATFORM_NAMES)).min(1).default([DEFAULT_PLATFORM]),
    }),
    slurm: z.record(z.string().regex(/^\d+\.\d+$/, "must be a release line like 25.11"), DownloadSchema),
    flavors: z.record(z.string().regex(/^[a-z0-9][a-z0-9.]*$/), FlavorSchema),
    inputs: z.strictObject(inputsShape),
    /**
     * cosign, which signs and attests the images: its official image pinned by
     * digest (an image index: one digest pins every architecture's binary). A
     * site mirrors it by overriding `image` (and `digest`, if the mirror
     * re-pushed it). `digest: null` refuses signing.
     */
    cosign: z.strictObject({
      version: z.string().min(1),
      image: z.string().superRefine((value, ctx) => {
        const why = referenceProblem(value, { digest: false });
        if (why) ctx.addIssue({ code: "custom", message: `not an image reference: ${why}` });
      }),
      digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be sha256:<64 lowercase hex characters>").nullable(),
      digestSource: z.string().optional(),
    }),
    nvidiaToolkit: z.strictObject({
      version: z.string().min(1),
      /** linux/amd64's apt repository path (NVIDIA's is per architecture: .../deb/amd64). */
      repository: httpUrl,
      /** Other architectures' repository paths, e.g. {"arm64": {"repository": ".../deb/arm64"}}. */
      arch: z
        .strictObject({ amd64: z.strictObject({ repository: httpUrl }).optional(), arm64: z.strictObject({ repository: httpUrl }).optional() })
        .optional(),
    }),
  })
  .superRefine((manifest, ctx) => {
    for (const [line, release] of Object.entries(manifest.slurm)) {
      if (!release.version.startsWith(`${line}.`)) {
        ctx.addIssue({
          code: "custom",
          path: ["slurm", line, "version"],
          message: `release ${release.version} is not in line ${line}`,
        });
      }
    }
    // Own keys only: "constructor" or "toString" must not pass for a release line or a flavor.
    if (!Object.hasOwn(manifest.slurm, manifest.defaults.slurmVersion)) {
      ctx.addIssue({ code: "custom", path: ["defaults", "slurmVersion"], message: "no such release line" });
    }
    const defaultFlavor = Object.hasOwn(manifest.flavors, manifest.defaults.flavor) ? manifest.flavors[manifest.defaults.flavor] : undefined;
    if (!defaultFlavor) {
      ctx.addIssue({ code: "custom", path: ["defaults", "flavor"], message: "no such flavor" });
    }
    const lists: [(string | number)[], readonly string[]][] = [
      [["defaults", "platforms"], manifest.defaults.platforms],
      ...Object.entries(manifest.flavors).map(([name, flavor]): [(string | number)[], readonly string[]] => [["flavors", name, "platforms"], flavor.platforms]),
    ];
    for (const [path, list] of lists) {
      const twice = list.find((platform, i) => list.indexOf(platform) !== i);
      if (twice) ctx.addIssue({ code: "custom", path, message: `${twice} is listed twice` });
    }
    for (const platform of defaultFlavor ? manifest.defaults.platforms : []) {
      if (!defaultFlavor?.platforms.includes(platform)) {
        ctx.addIssue({
          code: "custom",
          path: ["defaults", "platforms"],
          message: `${platform} is not a platform of the default flavor ${manifest.defaults.flavor} (${defaultFlavor?.platforms.join(", ")})`,
        });
      }
    }
  });
export type Manifest = z.infer<typeof ManifestSchema>;

export class ManifestError extends Error {
  constructor(source: string, error: z.ZodError) {
    const lines = error.issues.map((issue) => `  ${issue.path.join(".") || "(root)"}: ${issue.message}`);
    super(`invalid manifest ${source}:\n${lines.join("\n")}`);
    this.name = "ManifestError";
  }
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Keys that would reach an object's prototype instead of the object. */
const RESERVED_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/**
 * Lays `override` over `base`: objects merge key by key (own keys only),
 * anything else replaces. `__proto__`, `constructor` and `prototype` keys
 * are refused.
 */
export function deepMerge(base: unknown, override: unknown, path: string[] = []): unknown {
  if (!isPlainObject(override)) return override;
  for (const key of Object.keys(override)) {
    if (RESERVED_KEYS.has(key)) throw new Error(`site manifest: key ${JSON.stringify([...path, key].join("."))} is not allowed`);
  }
  if (!isPlainObject(base)) return override;
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    merged[key] = deepMerge(Object.hasOwn(base, key) ? base[key] : undefined, value, [...path, key]);
  }
  return merged;
}

/** Validates a parsed manifest; `source` names it in errors. */
export function parseManifest(json: unknown, source: string): Manifest {
  const result = ManifestSchema.safeParse(json);
  if (!result.success) throw new ManifestError(source, result.error);
  return result.data;
}

export const MANIFEST_URL = new URL("../../manifest.json", import.meta.url);

/** The pinned manifest, with a site's partial manifest (parsed JSON) laid over it. */
export function loadManifest(override?: unknown): Manifest {
  const pinned: unknown = JSON.parse(readFileSync(MANIFEST_URL, "utf8"));
  if (override === undefined) return parseManifest(pinned, "manifest.json");
  return parseManifest(deepMerge(pinned, override), "manifest.json with the site manifest laid over it");
}

/** Parses a site manifest's text, naming it in errors. */
export function parseOverride(text: string, source = "site manifest"): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${source} is not valid JSON: ${(error as Error).message}`);
  }
}
