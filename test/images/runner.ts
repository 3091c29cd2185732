/**
 * The build runner: `docker build` of dockerfiles/<family>/Dockerfile per target,
 * with build arguments and labels taken only from src/ (manifest, plan), exactly
 * as `build` feeds them to Dagger. The harness only lays its stand-ins over the
 * manifest, as a site manifest would.
 */
import { join } from "node:path";
import type { ImageSpec } from "../../src/catalog.js";
import { deepMerge, loadManifest, type Manifest } from "../../src/manifest.js";
import { buildArgs, imageLabels, type Provenance, type Resolved, requireChecksums, resolve } from "../../src/plan.js";
import { docker, dockerOk, IMAGE_PREFIX, REPO, run, SLURM_STANDIN } from "./harness.js";

export const FLAVOR = "debian13";

/** A pinned download served by the harness: what a site manifest would say. */
export interface ServedDownload {
  version: string;
  url: string;
  sha256: string;
}

export interface HarnessSources {
  /** The local base image and its image id. */
  base: { name: string; id: string };
  /** The Slurm source stand-in, served from loopback. */
  slurm: ServedDownload;
  /**
   * The stand-ins' part of the site manifest (inputs.*, nvidiaToolkit), from
   * standins.ts's standInOverride with the loopback URLs.
   */
  standIns: unknown;
}

/**
 * The site manifest the harness lays over manifest.json: a "24.11" Slurm line
 * (the stand-in source is 24.11.5, so images say so), the debian13 flavor on the
 * local base image, every other input pointed at its loopback stand-in.
 */
export function siteOverride(sources: HarnessSources, baseDigest: string | null): unknown {
  return deepMerge(sources.standIns, {
    slurm: {
      [SLURM_STANDIN.line]: {
        ...sources.slurm,
        checksumSource: "Debian trixie slurm-wlm 24.11.5 orig tarball (SchedMD tag archive slurm-24-11-5-1)",
      },
    },
    flavors: {
      [FLAVOR]: {
        baseImage: sources.base.name,
        baseDigest,
        digestSource: "image id of the debootstrapped base imported by the harness",
      },
    },
  });
}

export interface BuildPlan {
  manifest: Manifest;
  resolved: Resolved;
  /** Build arguments, from plan.buildArgs. */
  args: Record<string, string>;
  /** Labels per image, from plan.imageLabels. */
  labels: (image: ImageSpec) => Record<string, string>;
  /** Local reference of an image, e.g. slinky-test/slurmd:24.11-debian13. */
  ref: (image: ImageSpec) => string;
  dockerfile: string;
  context: string;
}

/** HEAD's commit and commit time, so labels (and so image ids) do not change between runs. */
export async function provenance(): Promise<Provenance> {
  const result = await run("git", ["log", "-1", "--format=%H %cI"], { timeoutMs: 10_000 });
  const [revision, created] = result.code === 0 ? result.stdout.trim().split(" ") : [];
  return revision && created ? { revision, created } : {};
}

/**
 * Resolves the debian13 flavor, group "all", with the harness's site manifest.
 * The base image is labelled with its image id as base.digest. BuildKit cannot
 * resolve "name@sha256:<image id>" for an imported image (it has no registry
 * digest), so the build arguments come from the same manifest without that pin.
 */
export function buildPlan(sources: HarnessSources, prov: Provenance): BuildPlan {
  const selection = { slurmVersion: SLURM_STANDIN.line, flavor: FLAVOR, group: "all" };
  const pinned = loadManifest(siteOverride(sources, sources.base.id));
  const unpinned = loadManifest(siteOverride(sources, null));
  const resolvedPinned = resolve(pinned, selection);
  const resolved = resolve(unpinned, selection);
  requireChecksums(unpinned, resolved);
  const family = resolved.flavor.family;
  return {
    manifest: unpinned,
    resolved,
    args: buildArgs(unpinned, resolved),
    labels: (image) => imageLabels(pinned, resolvedPinned, image, prov),
    ref: (image) => `${IMAGE_PREFIX}/${image.name}:${resolved.line}-${resolved.flavorName}`,
    dockerfile: join(REPO, "dockerfiles", family, "Dockerfile"),
    context: join(REPO, "dockerfiles", family),
  };
}

/** The exact `docker build` arguments for one image. */
export function dockerBuildArgs(plan: BuildPlan, image: ImageSpec): string[] {
  const args = ["build", "--network", "host", "--progress", "plain", "-f", plan.dockerfile, "--target", image.target];
  for (const [key, value] of Object.entries(plan.args)) args.push("--build-arg", `${key}=${value}`);
  for (const [key, value] of Object.entries(plan.labels(image))) args.push("--label", `${key}=${value}`);
  args.push("-t", plan.ref(image), plan.context);
  return args;
}

export interface Built {
  seconds: number;
  id: string;
}

/** Builds one image; throws with the log's tail on failure. */
export async function buildImage(plan: BuildPlan, image: ImageSpec, logFile: string, timeoutMs: number): Promise<Built> {
  const result = await docker(dockerBuildArgs(plan, image), { timeoutMs, logFile });
  if (result.code !== 0) {
    throw new Error(`build of ${image.name} failed (exit ${result.code}); log ${logFile}:\n${result.stderr.slice(-6000)}`);
  }
  const id = (await dockerOk(["image", "inspect", "--format", "{{.Id}}", plan.ref(image)])).trim();
  return { seconds: result.seconds, id };
}

export async function imageSizeBytes(ref: string): Promise<number> {
  return Number((await dockerOk(["image", "inspect", "--format", "{{.Size}}", ref])).trim());
}

export async function imageLabelsOf(ref: string): Promise<Record<string, string>> {
  return JSON.parse(await dockerOk(["image", "inspect", "--format", "{{json .Config.Labels}}", ref])) ?? {};
}
