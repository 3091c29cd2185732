/**
 * The catalog: every image this module builds, as data. A target in the
 * Dockerfile carries the image's name; groups select images like buildx bake.
 */
import { InvalidInputError } from "./errors.js";

export const IMAGE_NAMES = [
  "slurmctld",
  "slurmd",
  "slurmdbd",
  "slurmrestd",
  "sackd",
  "login",
  "slurmd-pyxis",
  "login-pyxis",
] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];

export const GROUP_NAMES = ["core", "extras", "all"] as const;
export type GroupName = (typeof GROUP_NAMES)[number];

/** Downloads an image needs besides the Slurm source and the base image. */
export const INPUT_NAMES = ["pyxis", "enroot", "enrootCaps", "kubectl", "nvidiaKey"] as const;
export type InputName = (typeof INPUT_NAMES)[number];

export interface ImageSpec {
  readonly name: ImageName;
  /** Target in dockerfiles/<family>/Dockerfile. */
  readonly target: string;
  readonly title: string;
  readonly description: string;
  readonly group: Exclude<GroupName, "all">;
  /** The image whose stage this one is built on, if any. */
  readonly buildsOn: ImageName | null;
  /** Pinned downloads the target's stages fetch (the Slurm source is always fetched). */
  readonly inputs: readonly InputName[];
}

/**
 * The OS-layer targets of dockerfiles/<family>/Dockerfile: every distribution
 * package the images need, nothing of the compile. A cold build runs them while
 * the packages (Dockerfile.packages) compile: from the moment the compile can
 * start (COMPILE_DEPS_TARGET is built), so that they take the cores from the
 * compile's single-threaded stretches, not from the installs it waits for.
 */
export const OS_TARGETS = ["slurmctld-os", "slurmd-os", "sackd-os", "login-os"] as const;

/**
 * Download stages of dockerfiles/<family>/Dockerfile that only the pyxis images
 * take (enroot's packages, the toolkit repository's key): nothing of the
 * compile either, so a cold build runs them beside it too.
 */
export const PYXIS_DOWNLOAD_TARGETS = ["enroot-debs", "nvidia-key"] as const;

/**
 * The stage of dockerfiles/<family>/Dockerfile holding the distribution's
 * package lists, which the installs after the compile take instead of each
 * updating its own: fetched beside the compile, before the OS layers.
 */
export const APT_LISTS_TARGET = "apt-lists";

/** What a cold build of these images runs beside the compile: the package lists, the OS layers, and the pyxis downloads when a pyxis image is among them. */
export function besideCompileTargets(images: readonly ImageSpec[]): string[] {
  const pyxis = images.some((image) => image.inputs.includes("enroot"));
  return [APT_LISTS_TARGET, ...OS_TARGETS, ...(pyxis ? PYXIS_DOWNLOAD_TARGETS : [])];
}

/** The stage of Dockerfile.packages the compile starts from: the build tools and Slurm's build dependencies. */
export const COMPILE_DEPS_TARGET = "slurm-deps";

/** The target of Dockerfile.packages whose filesystem is the package set: /slurm/*.deb, /pyxis/*.deb. */
export const PACKAGES_TARGET = "packages";

const PYXIS_INPUTS: readonly InputName[] = ["pyxis", "enroot", "enrootCaps", "nvidiaKey"];

export const IMAGES: readonly ImageSpec[] = [
  {
    name: "slurmctld",
    target: "slurmctld",
    title: "Slurm Control Plane",
    description: "slurmctld, the central management daemon of a Slurm cluster",
    group: "core",
    buildsOn: null,
    inputs: [],
  },
  {
    name: "slurmd",
    target: "slurmd",
    title: "Slurm Worker Agent",
    description: "slurmd, the compute node daemon that runs jobs",
    group: "core",
    buildsOn: null,
    inputs: [],
  },
  {
    name: "slurmdbd",
    target: "slurmdbd",
    title: "Slurm Database Agent",
    description: "slurmdbd, the accounting database daemon",
    group: "core",
    buildsOn: null,
    inputs: [],
  },
  {
    name: "slurmrestd",
    target: "slurmrestd",
    title: "Slurm REST API Agent",
    description: "slurmrestd, the Slurm REST API daemon",
    group: "core",
    buildsOn: null,
    inputs: [],
  },
  {
    name: "sackd",
    target: "sackd",
    title: "Slurm Auth/Cred Server",
    description: "sackd, the authentication and credential daemon for login nodes",
    group: "core",
    buildsOn: null,
    inputs: ["kubectl"],
  },
  {
    name: "login",
    target: "login",
    title: "Slurm Login Container",
    description: "A Slurm login node for workload submission",
    group: "core",
    buildsOn: "sackd",
    inputs: ["kubectl"],
  },
  {
    name: "slurmd-pyxis",
    target: "slurmd-pyxis",
    title: "Slurm Worker Agent with Pyxis",
    description: "slurmd with the NVIDIA Pyxis plugin and enroot for GPU container jobs",
    group: "extras",
    buildsOn: "slurmd",
    inputs: PYXIS_INPUTS,
  },
  {
    name: "login-pyxis",
    target: "login-pyxis",
    title: "Slurm Login Container with Pyxis",
    description: "The login container with the NVIDIA Pyxis plugin and enroot",
    group: "extras",
    buildsOn: "login",
    inputs: ["kubectl", ...PYXIS_INPUTS],
  },
];

export { InvalidInputError } from "./errors.js";

/** The catalog entry of one image. */
export function imageSpec(name: string): ImageSpec {
  const spec = IMAGES.find((image) => image.name === name);
  if (!spec) throw new InvalidInputError("image", name, IMAGE_NAMES);
  return spec;
}

/** The images of a group, in catalog order (an image always after the one it builds on). */
export function imagesOf(group: string): ImageSpec[] {
  if (!(GROUP_NAMES as readonly string[]).includes(group)) {
    throw new InvalidInputError("group", group, GROUP_NAMES);
  }
  return IMAGES.filter((image) => group === "all" || image.group === group);
}
