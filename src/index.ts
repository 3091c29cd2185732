/**
 * slinky-containers: the Slurm container images run under slurm-operator
 * (Slinky), built from one graph. Slurm is compiled once; every image is a
 * target of that graph.
 */
import { argument, type Container, type Directory, type File, func, object } from "@dagger.io/dagger";
import { forEachImage, imageContainer } from "./build.js";
import { imageSpec } from "./catalog.js";
import { loadManifest, type Manifest, parseOverride } from "./manifest.js";
import { plan, requireChecksums, resolve } from "./plan.js";

/** Builds, checks and publishes the Slurm images for slurm-operator (Slinky). */
@object()
export class SlinkyContainers {
  dockerfiles: Directory;
  siteManifest?: File;

  constructor(
    /** The image recipes: this repository's dockerfiles/ folder. */
    @argument({ defaultPath: "/dockerfiles" }) dockerfiles: Directory,
    /**
     * A site manifest (JSON) laid over the pinned manifest.json: mirrors,
     * newer patch releases, checksums, base images.
     */
    manifest?: File,
  ) {
    this.dockerfiles = dockerfiles;
    this.siteManifest = manifest;
  }

  /**
   * Build one image and return its container: chain `terminal` to look
   * inside, `export` or `export-image` to keep it.
   */
  @func()
  async build(
    /** The image: slurmctld, slurmd, slurmdbd, slurmrestd, sackd, login, slurmd-pyxis or login-pyxis. */
    image: string,
    /** Slurm release line (or its pinned patch release). */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04 or debian13. */
    flavor = "ubuntu24.04",
  ): Promise<Container> {
    const manifest = await this.manifest();
    const resolved = resolve(manifest, { slurmVersion, flavor, image });
    requireChecksums(manifest, resolved);
    return imageContainer(this.dockerfiles, manifest, resolved, imageSpec(image));
  }

  /**
   * Build every image of a group concurrently, wait for all of them, and
   * report each image; fails naming every image that failed.
   */
  @func()
  async buildAll(
    /** Images to build: core, extras or all. */
    group = "all",
    /** Slurm release line (or its pinned patch release). */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04 or debian13. */
    flavor = "ubuntu24.04",
  ): Promise<string> {
    const manifest = await this.manifest();
    const resolved = resolve(manifest, { slurmVersion, flavor, group });
    requireChecksums(manifest, resolved);
    const outcomes = await forEachImage(resolved.images, async (image) => {
      await imageContainer(this.dockerfiles, manifest, resolved, image).sync();
    });
    return outcomes.map((o) => `${o.image}: built in ${o.seconds}s`).join("\n");
  }

  /**
   * What a run would build and push, as JSON, without building anything.
   * With no branch it plans a local build with no tags.
   */
  @func()
  async plan(
    /** Slurm release line (or its pinned patch release). */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04 or debian13. */
    flavor = "ubuntu24.04",
    /** Images to build: core, extras or all. */
    group = "all",
    /** The branch built from (e.g. main, feature/xyz); its GitLab slug goes into the tags. */
    branch?: string,
    /** The commit built from; its first 8 hex characters go into the tags. */
    sha?: string,
    /** Registry path the images are pushed under, e.g. registry.gitlab.com/group/project. */
    registry?: string,
    /** The branch whose builds are promoted to the production tag. */
    defaultBranch = "main",
  ): Promise<string> {
    const document = plan(await this.manifest(), { slurmVersion, flavor, group }, { branch, sha, registry, defaultBranch });
    return JSON.stringify(document, null, 2);
  }

  /** The pinned manifest, with the site manifest laid over it. */
  private async manifest(): Promise<Manifest> {
    if (!this.siteManifest) return loadManifest();
    return loadManifest(parseOverride(await this.siteManifest.contents(), "the --manifest file"));
  }
}
