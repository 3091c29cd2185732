/**
 * The Dagger build: one image is one target of dockerfiles/<family>/Dockerfile,
 * built with the plan's build arguments and labelled. Stages the targets share
 * (the Slurm build above all) are built once by the engine.
 */
import type { Container, Directory } from "@dagger.io/dagger";
import pLimit from "p-limit";
import type { ImageSpec } from "./catalog.js";
import type { Manifest } from "./manifest.js";
import { buildArgs, imageLabels, type Provenance, type Resolved } from "./plan.js";

/** How many targets are asked of the engine at once. */
export const BUILD_CONCURRENCY = 4;

/** The container of one image, lazily: nothing runs until it is used. */
export function imageContainer(
  dockerfiles: Directory,
  manifest: Manifest,
  resolved: Resolved,
  image: ImageSpec,
  provenance: Provenance = {},
): Container {
  const args = Object.entries(buildArgs(manifest, resolved)).map(([name, value]) => ({ name, value }));
  const built = dockerfiles
    .directory(resolved.flavor.family)
    .dockerBuild({ dockerfile: "Dockerfile", target: image.target, buildArgs: args });
  return Object.entries(imageLabels(manifest, resolved, image, provenance)).reduce(
    (container, [name, value]) => container.withLabel(name, value),
    built,
  );
}

export interface Outcome<T> {
  readonly image: string;
  readonly seconds: number;
  readonly value?: T;
  readonly error?: string;
}

/** Thrown when any image failed; names every failure, not only the first. */
export class ImagesFailedError extends Error {
  constructor(readonly outcomes: readonly Outcome<unknown>[]) {
    const failed = outcomes.filter((outcome) => outcome.error !== undefined);
    const ok = outcomes.filter((outcome) => outcome.error === undefined).map((outcome) => outcome.image);
    super(
      `${failed.length} of ${outcomes.length} images failed:\n` +
        failed.map((outcome) => `  ${outcome.image}: ${outcome.error}`).join("\n") +
        `\nsucceeded: ${ok.join(", ") || "none"}`,
    );
    this.name = "ImagesFailedError";
  }
}

/**
 * Runs `work` for every image with bounded concurrency, waits for all of
 * them, and throws ImagesFailedError naming every failure.
 */
export async function forEachImage<T>(
  images: readonly ImageSpec[],
  work: (image: ImageSpec) => Promise<T>,
  concurrency = BUILD_CONCURRENCY,
): Promise<Outcome<T>[]> {
  const limit = pLimit(concurrency);
  const outcomes = await Promise.all(
    images.map((image) =>
      limit(async (): Promise<Outcome<T>> => {
        const started = performance.now();
        const seconds = () => Math.round((performance.now() - started) / 100) / 10;
        try {
          const value = await work(image);
          return { image: image.name, seconds: seconds(), value };
        } catch (error) {
          return { image: image.name, seconds: seconds(), error: (error as Error).message ?? String(error) };
        }
      }),
    ),
  );
  if (outcomes.some((outcome) => outcome.error !== undefined)) throw new ImagesFailedError(outcomes);
  return outcomes;
}
