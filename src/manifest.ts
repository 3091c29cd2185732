/**
 * The manifest: Slurm release lines, Linux flavors and pinned downloads, as
 * data in manifest.json. A site may lay a partial manifest over it (mirrors,
 * newer patch releases, checksums); the result is validated with zod.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { GROUP_NAMES, INPUT_NAMES } from "./catalog.js";

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters");
const httpUrl = z.url({ protocol: /^https?$/ });

/** One pinned download. `sha256: null` says the checksum is not known yet. */
export const DownloadSchema = z.strictObject({
  version: z.string().min(1),
  url: httpUrl,
  sha256: sha256.nullable(),
  /** For a signing key: its OpenPGP fingerprint, checked when no sha256 is pinned. */
  fingerprint: z
    .string()
    .regex(/^[0-9A-F]{40}$/, "must be 40 uppercase hex characters")
    .optional(),
  /** Where the checksum comes from, or why it is missing. */
  checksumSource: z.string().optional(),
});
export type Download = z.infer<typeof DownloadSchema>;

export const FlavorSchema = z.strictObject({
  /** Selects dockerfiles/<family>/Dockerfile. */
  family: z.enum(["debian"]),
  description: z.string().min(1),
  baseImage: z.string().min(1),
  baseDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/).nullable(),
  /** Where the digest comes from. */
  digestSource: z.string().optional(),
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
    }),
    slurm: z.record(z.string().regex(/^\d+\.\d+$/, "must be a release line like 25.11"), DownloadSchema),
    flavors: z.record(z.string().regex(/^[a-z0-9][a-z0-9.]*$/), FlavorSchema),
    inputs: z.strictObject(inputsShape),
    nvidiaToolkit: z.strictObject({
      version: z.string().min(1),
      repository: httpUrl,
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
    if (!(manifest.defaults.slurmVersion in manifest.slurm)) {
      ctx.addIssue({ code: "custom", path: ["defaults", "slurmVersion"], message: "no such release line" });
    }
    if (!(manifest.defaults.flavor in manifest.flavors)) {
      ctx.addIssue({ code: "custom", path: ["defaults", "flavor"], message: "no such flavor" });
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

/** Lays `override` over `base`: objects merge key by key, anything else replaces. */
export function deepMerge(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) merged[key] = deepMerge(base[key], value);
  return merged;
}

/** Validates a parsed manifest; `source` names it in errors. */
export function parseManifest(json: unknown, source: string): Manifest {
  const result = ManifestSchema.safeParse(json);
  if (!result.success) throw new ManifestError(source, result.error);
  return result.data;
}

export const MANIFEST_URL = new URL("../manifest.json", import.meta.url);

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
