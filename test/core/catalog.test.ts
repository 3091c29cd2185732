import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  APT_LISTS_TARGET,
  besideCompileTargets,
  COMPILE_DEPS_TARGET,
  IMAGES,
  IMAGE_NAMES,
  imageSpec,
  imagesOf,
  InvalidInputError,
  OS_TARGETS,
  PACKAGES_TARGET,
  PYXIS_DOWNLOAD_TARGETS,
} from "../../src/core/catalog.js";
import { ancestry, PACKAGES_DIR, parseDockerfile, type Stage } from "../../src/cache/keys.js";

const RECIPE = join(import.meta.dirname, "..", "..", "dockerfiles", "debian");
/** A recipe Dockerfile as the build cache's keys read it. */
const parsed = (file: string) => parseDockerfile(readFileSync(join(RECIPE, file), "utf8"));
/** Whether a stage takes the package set from the build context. */
const takesPackages = (stage: Stage) => stage.sources.some((source) => source === PACKAGES_DIR || source.startsWith(`${PACKAGES_DIR}/`));

describe("catalog", () => {
  it("holds the 8 images with the seed guide's titles", () => {
    expect(IMAGES.map((image) => [image.name, image.title])).toEqual([
      ["slurmctld", "Slurm Control Plane"],
      ["slurmd", "Slurm Worker Agent"],
      ["slurmdbd", "Slurm Database Agent"],
      ["slurmrestd", "Slurm REST API Agent"],
      ["sackd", "Slurm Auth/Cred Server"],
      ["login", "Slurm Login Container"],
      ["slurmd-pyxis", "Slurm Worker Agent with Pyxis"],
      ["login-pyxis", "Slurm Login Container with Pyxis"],
    ]);
  });

  it("names each Dockerfile target after its image", () => {
    for (const image of IMAGES) expect(image.target).toBe(image.name);
  });

  it("groups core and extras as buildx bake did, and all in catalog order", () => {
    expect(imagesOf("core").map((image) => image.name)).toEqual([
      "slurmctld", "slurmd", "slurmdbd", "slurmrestd", "sackd", "login",
    ]);
    expect(imagesOf("extras").map((image) => image.name)).toEqual(["slurmd-pyxis", "login-pyxis"]);
    expect(imagesOf("all").map((image) => image.name)).toEqual([...IMAGE_NAMES]);
  });

  it("builds pyxis images on slurmd and login, and login on sackd", () => {
    expect(imageSpec("slurmd-pyxis").buildsOn).toBe("slurmd");
    expect(imageSpec("login-pyxis").buildsOn).toBe("login");
    expect(imageSpec("login").buildsOn).toBe("sackd");
  });

  it("lists an image after the image it builds on", () => {
    const order = IMAGES.map((image) => image.name);
    for (const image of IMAGES) {
      if (image.buildsOn) expect(order.indexOf(image.buildsOn)).toBeLessThan(order.indexOf(image.name));
    }
  });

  it("needs every input of the image it builds on", () => {
    for (const image of IMAGES) {
      if (image.buildsOn) expect(image.inputs).toEqual(expect.arrayContaining([...imageSpec(image.buildsOn).inputs]));
    }
  });

  it("refuses an unknown image or group, naming the valid values", () => {
    expect(() => imageSpec("slurmdd")).toThrow(InvalidInputError);
    expect(() => imageSpec("slurmdd")).toThrow(
      'unknown image "slurmdd": valid values are slurmctld, slurmd, slurmdbd, slurmrestd, sackd, login, slurmd-pyxis, login-pyxis',
    );
    expect(() => imagesOf("pyxis")).toThrow('unknown group "pyxis": valid values are core, extras, all');
  });
});

describe("what a cold build runs beside the compile", () => {
  it("is the package lists and the OS layers, and the pyxis downloads only when a pyxis image is in the run", () => {
    expect(besideCompileTargets(imagesOf("core"))).toEqual([APT_LISTS_TARGET, ...OS_TARGETS]);
    expect(besideCompileTargets([imageSpec("slurmdbd")])).toEqual([APT_LISTS_TARGET, ...OS_TARGETS]);
    expect(besideCompileTargets(imagesOf("all"))).toEqual([APT_LISTS_TARGET, ...OS_TARGETS, ...PYXIS_DOWNLOAD_TARGETS]);
    expect(besideCompileTargets([imageSpec("login-pyxis")])).toEqual([APT_LISTS_TARGET, ...OS_TARGETS, ...PYXIS_DOWNLOAD_TARGETS]);
  });

  it("names stages of the Dockerfile that take nothing of the package set", () => {
    const dockerfile = parsed("Dockerfile");
    for (const target of besideCompileTargets(IMAGES)) {
      // ancestry throws for a name that is no stage; no stage it is built from takes packages/.
      expect(ancestry(dockerfile, target).filter(takesPackages).map((stage) => stage.name), target).toEqual([]);
    }
    // Every image's own stage does take it: nothing of the images themselves is built beside the compile.
    for (const image of IMAGES) {
      expect(besideCompileTargets(IMAGES)).not.toContain(image.target);
      expect(ancestry(dockerfile, image.target).some(takesPackages), image.name).toBe(true);
    }
  });

  it("starts once the compile's own stage is built: COMPILE_DEPS_TARGET is what the compile and pyxis build FROM", () => {
    const from = new Map(parsed("Dockerfile.packages").stages.map((stage) => [stage.name, stage.from]));
    expect(from.get("slurm-build")).toBe(COMPILE_DEPS_TARGET);
    expect(from.get("pyxis-build")).toBe(COMPILE_DEPS_TARGET);
    expect(from.get(PACKAGES_TARGET)).toBe("scratch");
  });
});
