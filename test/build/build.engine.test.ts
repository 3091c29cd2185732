import { dag } from "@dagger.io/dagger";
import { describe, expect, it } from "vitest";
import {
  BUILD_CONCURRENCY,
  forEachImage,
  imageContainer,
  ImagesFailedError,
  osLayers,
  packagesDirectory,
  recipeOf,
  syncGated,
} from "../../src/build/build.engine.js";
import { APT_LISTS_TARGET, IMAGES, imageSpec, OS_TARGETS, PYXIS_DOWNLOAD_TARGETS } from "../../src/core/catalog.js";
import { loadManifest } from "../../src/core/manifest.js";
import { SlinkyContainers } from "../../src/index.js";
import { resolve } from "../../src/build/plan.js";
import { queryOf } from "../support/dagger.js";

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
    const query = queryOf(imageContainer(recipeOf(dag.directory(), manifest, resolved), imageSpec("sackd"), { provenance: { revision: "abc" } }));
    expect(query.map((step) => step.operation)).toEqual([
      "directory",
      "directory",
      "withDirectory",
      "dockerBuild",
      ...Array(9).fill("withLabel"),
    ]);
    expect(query.at(-1)).toEqual({
      operation: "withLabel",
      args: { name: "org.opencontainers.image.revision", value: "abc" },
    });
  });
});

describe("the package set in the images' build context", () => {
  const manifest = loadManifest();
  const resolved = resolve(manifest, { flavor: "debian13", image: "slurmd" });
  const packagesOf = (container: unknown) => {
    const step = queryOf(container).find((s) => s.operation === "withDirectory")!;
    expect(step.args!.path).toBe("packages");
    return queryOf(step.args!.source);
  };

  it("is the packages target of Dockerfile.packages, with the images' build arguments, when nothing is cached", () => {
    const image = imageContainer(recipeOf(dag.directory(), manifest, resolved), imageSpec("slurmd"));
    const packages = packagesOf(image);
    const build = packages.find((s) => s.operation === "dockerBuild")!;
    expect(build.args).toMatchObject({ dockerfile: "Dockerfile.packages", target: "packages" });
    expect(packages.at(-1)!.operation).toBe("rootfs");
    const imageBuild = queryOf(image).find((s) => s.operation === "dockerBuild")!;
    expect(build.args!.buildArgs).toEqual(imageBuild.args!.buildArgs);
  });

  it("is the cache entry's filesystem, pulled by digest, on a hit", () => {
    const ref = `registry.example.com/slinky/cache/packages@sha256:${"a".repeat(64)}`;
    const packages = packagesDirectory(recipeOf(dag.directory(), manifest, resolved), { kind: "cached", ref });
    const query = queryOf(packages);
    expect(query.map((s) => s.operation)).toEqual(["container", "from", "rootfs"]);
    expect(query[0]!.args).toEqual({ platform: "linux/amd64" });
    expect(query[1]!.args).toEqual({ address: ref });
  });

  it("pulls the entry with the cache's credentials when it has them (the engine may have no login for the registry)", () => {
    const ref = `registry.example.com/slinky/cache/packages@sha256:${"a".repeat(64)}`;
    const password = dag.setSecret("cache-password", "s3cret");
    const query = queryOf(packagesDirectory(recipeOf(dag.directory(), manifest, resolved), { kind: "cached", ref, auth: { username: "ci", password } }));
    expect(query.map((s) => s.operation)).toEqual(["container", "withRegistryAuth", "from", "rootfs"]);
    expect(query[1]!.args).toMatchObject({ address: "registry.example.com", username: "ci" });
    expect(JSON.stringify(query.map((s) => s.args?.address ?? s.args?.username ?? null))).not.toContain("s3cret");
  });

  it("builds FROM the base digest the cache resolved, for the packages and the image alike", () => {
    const base = `docker.io/library/debian:trixie@sha256:${"b".repeat(64)}`;
    const image = imageContainer(recipeOf(dag.directory(), manifest, resolved, { baseImage: base }), imageSpec("slurmd"));
    const baseOf = (query: { operation: string; args?: Record<string, unknown> }[]) =>
      (query.find((s) => s.operation === "dockerBuild")!.args!.buildArgs as { name: string; value: string }[]).find(
        (a) => a.name === "BASE_IMAGE",
      )!.value;
    expect(baseOf(queryOf(image))).toBe(base);
    expect(baseOf(packagesOf(image))).toBe(base);
  });

  it("has the package lists and OS-layer targets that need nothing of the compile, and the pyxis downloads when a pyxis image is in the run", () => {
    const targetsOf = (layers: unknown[]) => layers.map((l) => queryOf(l).find((s) => s.operation === "dockerBuild")!.args!.target);
    const layers = osLayers(recipeOf(dag.directory(), manifest, resolved));
    expect(targetsOf(layers)).toEqual([APT_LISTS_TARGET, ...OS_TARGETS]);
    const all = osLayers(recipeOf(dag.directory(), manifest, resolve(manifest, { flavor: "debian13", group: "all" })));
    expect(targetsOf(all)).toEqual([APT_LISTS_TARGET, ...OS_TARGETS, ...PYXIS_DOWNLOAD_TARGETS]);
    for (const layer of [...layers, ...all]) expect(queryOf(layer).some((s) => s.operation === "withDirectory")).toBe(false);
  });
});

describe("syncGated: the OS layers beside the compile, once it can start", () => {
  /** A Syncable that records when it starts and settles when told. */
  const item = (name: string, log: string[]) => {
    let settle: (error?: Error) => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      settle = (error) => (error ? reject(error) : resolve());
    });
    return { sync: () => (log.push(`start ${name}`), done), settle };
  };

  it("starts the main build and the gate at once, the rest only when every gate is ready, and waits for all", async () => {
    const log: string[] = [];
    const [main, gate, layer1, layer2] = ["packages", "slurm-deps", "slurmd-os", "login-os"].map((name) => item(name, log));
    let finished = false;
    const all = syncGated(main!, [gate!], [layer1!, layer2!]).then(() => (finished = true));
    await sleep(5);
    expect(log).toEqual(["start packages", "start slurm-deps"]);
    gate!.settle();
    await sleep(5);
    expect(log).toEqual(["start packages", "start slurm-deps", "start slurmd-os", "start login-os"]);
    main!.settle();
    layer1!.settle();
    await sleep(5);
    expect(finished).toBe(false);
    layer2!.settle();
    await all;
    expect(finished).toBe(true);
  });

  it("with no gate (the package set pulled from the cache) starts everything at once", async () => {
    const log: string[] = [];
    const [main, layer] = ["packages", "slurmd-os"].map((name) => item(name, log));
    const all = syncGated(main!, [], [layer!]);
    await sleep(5);
    expect(log).toEqual(["start packages", "start slurmd-os"]);
    main!.settle();
    layer!.settle();
    await all;
  });

  it("fails when the gate fails, and starts nothing after it", async () => {
    const log: string[] = [];
    const [main, gate, layer] = ["packages", "slurm-deps", "slurmd-os"].map((name) => item(name, log));
    const all = syncGated(main!, [gate!], [layer!]);
    gate!.settle(new Error("apt-get build-dep failed"));
    main!.settle(new Error("apt-get build-dep failed"));
    await expect(all).rejects.toThrow("apt-get build-dep failed");
    expect(log).not.toContain("start slurmd-os");
  });
});

describe("a built image's cache labels", () => {
  it("come after the plan's labels, so the cache entry carries its key and scope", () => {
    const manifest = loadManifest();
    const resolved = resolve(manifest, { flavor: "debian13", image: "login" });
    const query = queryOf(
      imageContainer(recipeOf(dag.directory(), manifest, resolved), imageSpec("login"), {
        extraLabels: { "org.slinky-containers.cache.key": "k", "org.slinky-containers.cache.scope": "default" },
      }),
    );
    const labels = query.filter((s) => s.operation === "withLabel").map((s) => s.args!.name);
    expect(labels.slice(-2)).toEqual(["org.slinky-containers.cache.key", "org.slinky-containers.cache.scope"]);
  });
});

describe("one platform's build", () => {
  const manifest = loadManifest();
  const dockerBuilds = (object: unknown) =>
    queryOf(object)
      .filter((step) => step.operation === "dockerBuild")
      .map((step) => step.args as { target?: string; platform?: string; buildArgs?: { name: string; value: string }[] });
  const arg = (step: { buildArgs?: { name: string; value: string }[] }, name: string) => step.buildArgs?.find((a) => a.name === name)?.value;

  it("asks dockerBuild for linux/amd64 by default, with amd64's downloads", () => {
    const resolved = resolve(manifest, { image: "sackd" });
    const [build] = dockerBuilds(imageContainer(recipeOf(dag.directory(), manifest, resolved), imageSpec("sackd")));
    expect(build?.platform).toBe("linux/amd64");
    expect(arg(build!, "KUBECTL_URL")).toBe("https://dl.k8s.io/release/v1.35.0/bin/linux/amd64/kubectl");
  });

  it("builds the package set, the OS layers and the image for linux/arm64 with arm64's downloads", () => {
    const resolved = resolve(manifest, { image: "sackd", platforms: "linux/arm64" });
    const packages = packagesDirectory(recipeOf(dag.directory(), manifest, resolved, { platform: "linux/arm64" }));
    const [packageSet] = dockerBuilds(packages);
    expect([packageSet?.target, packageSet?.platform]).toEqual(["packages", "linux/arm64"]);
    const ref = `registry.example.com/slinky/cache/packages@sha256:${"c".repeat(64)}`;
    const cachedArm = queryOf(packagesDirectory(recipeOf(dag.directory(), manifest, resolved, { platform: "linux/arm64" }), { kind: "cached", ref }));
    expect(cachedArm[0]).toEqual({ operation: "container", args: { platform: "linux/arm64" } });
    for (const layer of osLayers(recipeOf(dag.directory(), manifest, resolved, { platform: "linux/arm64" }))) {
      expect(dockerBuilds(layer).map((b) => b.platform)).toEqual(["linux/arm64"]);
    }
    const image = dockerBuilds(imageContainer(recipeOf(dag.directory(), manifest, resolved, { platform: "linux/arm64" }), imageSpec("sackd"), { packages })).at(-1);
    expect([image?.target, image?.platform]).toEqual(["sackd", "linux/arm64"]);
    expect(arg(image!, "KUBECTL_URL")).toBe("https://dl.k8s.io/release/v1.35.0/bin/linux/arm64/kubectl");
    expect(arg(image!, "KUBECTL_SHA256")).toBe("58f82f9fe796c375c5c4b8439850b0f3f4d401a52434052f2df46035a8789e25");
    expect(arg(image!, "NVIDIA_REPO_URL")).toBe("https://nvidia.github.io/libnvidia-container/stable/deb/arm64");
  });

  it("dagger call build --image slurmd --platform linux/arm64 returns the arm64 container", async () => {
    const module = new SlinkyContainers(dag.directory());
    const container = await module.build("slurmd", "25.11", "ubuntu24.04", undefined, undefined, undefined, 7, "linux/arm64");
    // The package set goes in as withDirectory's argument (its own arm64 build, checked above).
    expect(dockerBuilds(container).map((b) => [b.target, b.platform])).toEqual([["slurmd", "linux/arm64"]]);
    expect(queryOf(container).map((step) => step.operation)).toContain("withDirectory");
  });

  it("dagger call build --image slurmd-pyxis --platform linux/arm64 is refused: the arm64 enroot .debs are not pinned", async () => {
    const module = new SlinkyContainers(dag.directory());
    await expect(module.build("slurmd-pyxis", "25.11", "ubuntu24.04", undefined, undefined, undefined, 7, "linux/arm64")).rejects.toThrow(
      /^no sha256 is pinned for inputs\.enroot \(linux\/arm64\), inputs\.enrootCaps \(linux\/arm64\): refusing to build/,
    );
  });
});
