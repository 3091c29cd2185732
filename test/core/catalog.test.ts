import { describe, expect, it } from "vitest";
import { IMAGES, IMAGE_NAMES, imageSpec, imagesOf, InvalidInputError } from "../../src/core/catalog.js";

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
