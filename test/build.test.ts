import { dag } from "@dagger.io/dagger";
import { describe, expect, it } from "vitest";
import { BUILD_CONCURRENCY, forEachImage, imageContainer, ImagesFailedError } from "../src/build.js";
import { IMAGES, imageSpec } from "../src/catalog.js";
import { loadManifest } from "../src/manifest.js";
import { resolve } from "../src/plan.js";
import { queryOf } from "./support/dagger.js";

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

describe("forEachImage", () => {
  it("runs every image with at most BUILD_CONCURRENCY at once and returns them in catalog order", async () => {
    let running = 0;
    let peak = 0;
    const outcomes = await forEachImage(IMAGES, async (image) => {
      running++;
      peak = Math.max(peak, running);
      await sleep(20);
      running--;
      return image.target;
    });
    expect(peak).toBe(BUILD_CONCURRENCY);
    expect(outcomes.map((outcome) => [outcome.image, outcome.value])).toEqual(IMAGES.map((i) => [i.name, i.name]));
  });

  it("waits for every image and names every failure, not only the first", async () => {
    const finished: string[] = [];
    const run = forEachImage(IMAGES, async (image) => {
      if (image.name === "slurmd") throw new Error("apt failed");
      await sleep(image.name === "login-pyxis" ? 50 : 5);
      if (image.name === "login-pyxis") throw new Error("pyxis failed");
      finished.push(image.name);
    });
    const error = await run.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ImagesFailedError);
    expect((error as Error).message).toBe(
      "2 of 8 images failed:\n  slurmd: apt failed\n  login-pyxis: pyxis failed\n" +
        "succeeded: slurmctld, slurmdbd, slurmrestd, sackd, login, slurmd-pyxis",
    );
    expect(finished).toHaveLength(6);
  });
});

describe("imageContainer", () => {
  it("builds the target from the flavor family's folder and labels it, lazily", () => {
    const manifest = loadManifest();
    const resolved = resolve(manifest, { flavor: "debian13", image: "sackd" });
    const query = queryOf(imageContainer(dag.directory(), manifest, resolved, imageSpec("sackd"), { revision: "abc" }));
    expect(query.map((step) => step.operation)).toEqual([
      "directory",
      "directory",
      "dockerBuild",
      ...Array(9).fill("withLabel"),
    ]);
    expect(query.at(-1)).toEqual({
      operation: "withLabel",
      args: { name: "org.opencontainers.image.revision", value: "abc" },
    });
  });
});
