import { dag } from "@dagger.io/dagger";
import { beforeAll, describe, expect, it } from "vitest";
import { loadManifest } from "../src/core/manifest.js";
import { SlinkyContainers } from "../src/index.js";
import { queryOf, type ScannedObject, scanModule } from "./support/dagger.js";

/** The build-cache arguments of build, build-all, test and plan: a registry, its credentials (a Secret), the maximum age. */
const CACHE_ARGS = {
  cacheRegistry: ["STRING_KIND", "optional", undefined],
  cacheUsername: ["STRING_KIND", "optional", undefined],
  cachePassword: ["OBJECT_KIND", "optional", undefined],
  cacheMaxAgeDays: ["INTEGER_KIND", "required", 7],
};

describe("the Dagger surface, as the SDK's module scanner sees it", () => {
  let module: ScannedObject;
  beforeAll(async () => {
    const scanned = await scanModule();
    module = scanned.objects.SlinkyContainers!;
  }, 60_000);

  const args = (fn: string) =>
    Object.fromEntries(
      Object.values(module.methods[fn]!.arguments).map((arg) => [
        arg.name,
        [arg.type.kind, arg.isOptional ? "optional" : "required", arg.defaultValue],
      ]),
    );

  it("takes the recipes from dockerfiles/ by default and an optional site manifest", () => {
    const constructorArgs = module.constructor.arguments;
    expect(constructorArgs.dockerfiles).toMatchObject({ type: { name: "Directory" }, defaultPath: "/dockerfiles" });
    expect(constructorArgs.manifest).toMatchObject({ type: { name: "File" }, isOptional: true });
  });

  it("exposes build returning a Container, so terminal and export chain", () => {
    expect(module.methods.build!.returnType).toEqual({ kind: "OBJECT_KIND", name: "Container" });
    expect(args("build")).toEqual({
      image: ["STRING_KIND", "required", undefined],
      platform: ["STRING_KIND", "optional", undefined],
      slurmVersion: ["STRING_KIND", "required", "25.11"],
      flavor: ["STRING_KIND", "required", "ubuntu24.04"],
      ...CACHE_ARGS,
    });
  });

  it("exposes build-all with a group", () => {
    expect(args("buildAll")).toMatchObject({
      group: ["STRING_KIND", "required", "all"],
      slurmVersion: ["STRING_KIND", "required", "25.11"],
      flavor: ["STRING_KIND", "required", "ubuntu24.04"],
    });
  });

  it("exposes test, the smoke checks of a group", () => {
    expect(module.methods.test!.returnType).toEqual({ kind: "STRING_KIND" });
    expect(args("test")).toEqual({
      group: ["STRING_KIND", "required", "all"],
      platforms: ["STRING_KIND", "optional", undefined],
      slurmVersion: ["STRING_KIND", "required", "25.11"],
      flavor: ["STRING_KIND", "required", "ubuntu24.04"],
      ...CACHE_ARGS,
    });
    expect(args("buildAll")).toMatchObject(CACHE_ARGS);
  });

  it("exposes plan with the destination arguments", () => {
    expect(args("plan")).toEqual({
      slurmVersion: ["STRING_KIND", "required", "25.11"],
      flavor: ["STRING_KIND", "required", "ubuntu24.04"],
      group: ["STRING_KIND", "required", "all"],
      branch: ["STRING_KIND", "optional", undefined],
      sha: ["STRING_KIND", "optional", undefined],
      registry: ["STRING_KIND", "optional", undefined],
      defaultBranch: ["STRING_KIND", "required", "main"],
      ...CACHE_ARGS,
      platforms: ["STRING_KIND", "optional", undefined],
    });
  });

  it("lets ci switch the build cache (on by default) and set its registry and maximum age", () => {
    expect(args("ci")).toMatchObject({
      buildCache: ["STRING_KIND", "required", "on"],
      cacheRegistry: ["STRING_KIND", "optional", undefined],
      cacheMaxAgeDays: ["INTEGER_KIND", "required", 7],
    });
  });

  it("shows the manifest's defaults on the command line", () => {
    const { defaults } = loadManifest();
    for (const fn of Object.values(module.methods)) {
      const byName = Object.fromEntries(Object.values(fn.arguments).map((arg) => [arg.name, arg.defaultValue]));
      if ("slurmVersion" in byName) expect(byName.slurmVersion).toBe(defaults.slurmVersion);
      if ("flavor" in byName) expect(byName.flavor).toBe(defaults.flavor);
      if ("group" in byName) expect(byName.group).toBe(defaults.group);
      // No literal platform default: absent means the manifest's defaults.platforms.
      if ("platform" in byName) expect(byName.platform).toBeUndefined();
      if ("platforms" in byName) expect(byName.platforms).toBeUndefined();
    }
  });

  it("documents every function and argument for dagger call --help", () => {
    expect(module.description).not.toBe("");
    for (const fn of Object.values(module.methods)) {
      expect(fn.description, fn.name).not.toBe("");
      for (const arg of Object.values(fn.arguments)) expect(arg.description, `${fn.name} ${arg.name}`).not.toBe("");
    }
  });
});

describe("the graph a build would send (lazy, no engine)", () => {
  const module = new SlinkyContainers(dag.directory());

  it("asks for the slurmd target of dockerfiles/debian with the manifest's build arguments", async () => {
    const manifest = loadManifest();
    const query = queryOf(await module.build("slurmd", "25.11", "ubuntu24.04"));
    const build = query.find((step) => step.operation === "dockerBuild")!;
    expect(query[1]).toEqual({ operation: "directory", args: { path: "debian" } });
    expect(build.args).toMatchObject({ dockerfile: "Dockerfile", target: "slurmd", platform: manifest.defaults.platforms[0] });
    const buildArgs = Object.fromEntries(
      (build.args!.buildArgs as { name: string; value: string }[]).map(({ name, value }) => [name, value]),
    );
    expect(buildArgs).toMatchObject({
      SLURM_VERSION: manifest.slurm["25.11"]!.version,
      SLURM_SHA256: manifest.slurm["25.11"]!.sha256,
      BASE_IMAGE: `docker.io/library/ubuntu:24.04@${manifest.flavors["ubuntu24.04"]!.baseDigest}`,
    });
  });

  it("labels the image after building it", async () => {
    const query = queryOf(await module.build("login-pyxis", "25.11", "debian13"));
    const labels = Object.fromEntries(
      query.filter((step) => step.operation === "withLabel").map((step) => [step.args!.name, step.args!.value]),
    );
    expect(labels["org.opencontainers.image.title"]).toBe("Slurm Login Container with Pyxis");
    expect(labels["org.opencontainers.image.base.name"]).toBe("docker.io/library/debian:trixie");
  });

  it("refuses bad input before anything is sent", async () => {
    await expect(module.build("slurmdd", "25.11", "ubuntu24.04")).rejects.toThrow(/unknown image "slurmdd"/);
    await expect(module.build("slurmd", "25.11", "centos")).rejects.toThrow(/unknown flavor "centos"/);
    await expect(module.buildAll("gpu", "25.11", "ubuntu24.04")).rejects.toThrow(/unknown group "gpu"/);
  });

  it("plans feature/xyz with the seed's tags", async () => {
    const document = JSON.parse(
      await module.plan("25.11", "ubuntu24.04", "core", "feature/xyz", "a1b2c3d4e5f6", "registry.example.com/slinky", "main"),
    );
    expect(document.images[0].references).toEqual([
      "registry.example.com/slinky/slurmctld:25.11-ubuntu24.04-feature-xyz-a1b2c3d4",
      "registry.example.com/slinky/slurmctld:25.11-ubuntu24.04-feature-xyz-latest",
    ]);
  });
});

describe("test: the smoke checks a build would run (lazy, no engine)", () => {
  it("runs the image's smoke script with sh, not through the entrypoint", async () => {
    const { smokeScript } = await import("../src/build/smoke.js");
    const { smokeTested } = await import("../src/release/pipeline.engine.js");
    const { gpuPluginsByArch } = await import("../src/core/gpu.js");
    const { imageContainer, recipeOf } = await import("../src/build/build.engine.js");
    const { resolve } = await import("../src/build/plan.js");
    const { imageSpec } = await import("../src/core/catalog.js");
    const manifest = loadManifest();
    const resolved = resolve(manifest, { image: "slurmdbd" });
    const query = queryOf(
      smokeTested(imageContainer(recipeOf(dag.directory(), manifest, resolved), imageSpec("slurmdbd")), "slurmdbd", resolved.slurm.version, gpuPluginsByArch(resolved.flavor)),
    );
    expect(query.at(-1)).toMatchObject({
      operation: "withExec",
      args: { args: ["sh", "-c", smokeScript("slurmdbd", resolved.slurm.version, gpuPluginsByArch(resolved.flavor))] },
    });
    expect(query.at(-1)?.args?.useEntrypoint).not.toBe(true);
  });
});
