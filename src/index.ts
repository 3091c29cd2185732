/**
 * slinky-containers: the Slurm container images run under slurm-operator
 * (Slinky), built from one graph. Slurm is compiled once; every image is a
 * target of that graph.
 */
import { createHash } from "node:crypto";
import { argument, type Container, type Directory, type File, func, object, type Secret } from "@dagger.io/dagger";
import { imageContainer, packagesDirectory, recipeOf } from "./build/build.engine.js";
import { scopeOf, summaryRows } from "./cache/cache.js";
import { type CachedBuild, cacheLine, cacheOptions, forEachRunImage, prepareCache, reusedContainer, reusedEntry } from "./cache/cachedbuild.engine.js";
import { createLogger } from "./core/log.js";
import { imageSpec } from "./core/catalog.js";
import { gpuPluginsByArch } from "./core/gpu.js";
import { checkInputs, InvalidInputError, keylessVerifierProblems, signingProblems, noTrailingSlash } from "./core/inputs.js";
import { loadManifest, type Manifest, parseOverride } from "./core/manifest.js";
import { plan, requireChecksums, type Resolved, resolve, type Selection } from "./build/plan.js";
import { type EngineRun, engineRun, outcome, reportDirectory, smokeTested } from "./release/pipeline.engine.js";
import { type PlatformName, sortPlatforms } from "./core/platform.js";
import { SIGNING_OPTIONAL, signingArgs, signingFields, verifyInEngine } from "./supply-chain/cosign.engine.js";
import type { SigningMode } from "./supply-chain/signing.js";

/** " (linux/arm64)" after an image's name when a run builds several platforms. */
function onPlatform(resolved: Resolved, platform: string): string {
  return resolved.platforms.length > 1 ? ` (${platform})` : "";
}

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
   * Build one image and return its container.
   * Chain `terminal` to look inside it, `export` or `export-image` to keep it.
   */
  @func()
  async build(
    /** The image: slurmctld, slurmd, slurmdbd, slurmrestd, sackd, login, slurmd-pyxis or login-pyxis. */
    image: string,
    /** Slurm release line: 25.11 or 26.05 (manifest.json's lines), or a line's pinned patch release. */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04, ubuntu26.04 or debian13. */
    flavor = "ubuntu24.04",
    /** A build-cache registry path to reuse from (read only), e.g. registry.gitlab.com/group/project/cache. */
    cacheRegistry?: string,
    /** User for the cache registry. */
    cacheUsername?: string,
    /** Password or token for the cache registry, e.g. env:REGISTRY_TOKEN. */
    cachePassword?: Secret,
    /** Cache entries older than this many days are not reused. */
    cacheMaxAgeDays = 7,
    /** The platform: linux/amd64 or linux/arm64 (emulated by the engine on another architecture); default the first of the manifest's defaults.platforms (linux/amd64). */
    platform?: string,
  ): Promise<Container> {
    checkInputs({ image, slurmVersion, flavor, platform });
    const { manifest, resolved } = await this.buildable({ slurmVersion, flavor, image, platforms: platform });
    const cached = await this.localCache(manifest, resolved, { cacheRegistry, cacheUsername, cachePassword, cacheMaxAgeDays });
    const entry = reusedEntry(cached, image);
    if (entry) return reusedContainer(entry, cached.options, resolved.platforms[0] as PlatformName);
    const r = recipeOf(this.dockerfiles, manifest, resolved, { baseImage: cached.baseImage });
    return imageContainer(r, imageSpec(image), { packages: packagesDirectory(r, cached.packages) });
  }

  /**
   * Build every image of a group concurrently and report each one.
   * Fails naming every image that failed.
   */
  @func()
  async buildAll(
    /** Images to build: core, extras or all. */
    group = "all",
    /** Slurm release line: 25.11 or 26.05 (manifest.json's lines), or a line's pinned patch release. */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04, ubuntu26.04 or debian13. */
    flavor = "ubuntu24.04",
    /** A build-cache registry path to reuse from (read only), e.g. registry.gitlab.com/group/project/cache. */
    cacheRegistry?: string,
    /** User for the cache registry. */
    cacheUsername?: string,
    /** Password or token for the cache registry, e.g. env:REGISTRY_TOKEN. */
    cachePassword?: Secret,
    /** Cache entries older than this many days are not reused. */
    cacheMaxAgeDays = 7,
    /** Platforms, comma-separated: linux/amd64, linux/arm64 or both; default the manifest's defaults.platforms (linux/amd64). */
    platforms?: string,
  ): Promise<string> {
    checkInputs({ group, slurmVersion, flavor, platforms });
    const { manifest, resolved } = await this.buildable({ slurmVersion, flavor, group, platforms });
    const cached = await this.localCache(manifest, resolved, { cacheRegistry, cacheUsername, cachePassword, cacheMaxAgeDays });
    const runs = await forEachRunImage(this.dockerfiles, manifest, resolved, cached, async ({ entry, container }) => {
      if (entry) return `reused ${entry.ref}`;
      await container.sync();
      return "built";
    });
    const lines = runs.flatMap(({ platform, outcomes }) =>
      outcomes.map((o) => `${o.image}${onPlatform(resolved, platform)}: ${o.value} in ${o.seconds}s`),
    );
    return [cacheLine(cached), ...lines].join("\n");
  }

  /**
   * Build every image of a group and run its smoke checks inside it.
   * The daemons print the pinned version, uid 401 exists, the entrypoint is
   * executable, and no binary or plugin misses a shared library.
   */
  @func()
  async test(
    /** Images to check: core, extras or all. */
    group = "all",
    /** Slurm release line: 25.11 or 26.05 (manifest.json's lines), or a line's pinned patch release. */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04, ubuntu26.04 or debian13. */
    flavor = "ubuntu24.04",
    /** A build-cache registry path to reuse from (read only), e.g. registry.gitlab.com/group/project/cache. */
    cacheRegistry?: string,
    /** User for the cache registry. */
    cacheUsername?: string,
    /** Password or token for the cache registry, e.g. env:REGISTRY_TOKEN. */
    cachePassword?: Secret,
    /** Cache entries older than this many days are not reused. */
    cacheMaxAgeDays = 7,
    /** Platforms, comma-separated: linux/amd64, linux/arm64 or both; default the manifest's defaults.platforms (linux/amd64). */
    platforms?: string,
  ): Promise<string> {
    checkInputs({ group, slurmVersion, flavor, platforms });
    const { manifest, resolved } = await this.buildable({ slurmVersion, flavor, group, platforms });
    const cached = await this.localCache(manifest, resolved, { cacheRegistry, cacheUsername, cachePassword, cacheMaxAgeDays });
    const runs = await forEachRunImage(this.dockerfiles, manifest, resolved, cached, async ({ image, entry, container }) => {
      await smokeTested(container, image.name, resolved.slurm.version, gpuPluginsByArch(resolved.flavor)).stdout();
      return entry ? ` (reused ${entry.ref})` : "";
    });
    const lines = runs.flatMap(({ platform, outcomes }) =>
      outcomes.map((o) => `${o.image}${onPlatform(resolved, platform)}: smoke checks passed in ${o.seconds}s${o.value}`),
    );
    return [cacheLine(cached), ...lines].join("\n");
  }

  /**
   * What a run would build and push, as JSON, without building anything.
   * With no branch it plans a local build with no tags.
   */
  @func()
  async plan(
    /** Slurm release line: 25.11 or 26.05 (manifest.json's lines), or a line's pinned patch release. */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04, ubuntu26.04 or debian13. */
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
    /** A build-cache registry path: shows each key and whether the cache has it (e.g. <registry>/cache). */
    cacheRegistry?: string,
    /** User for the cache registry. */
    cacheUsername?: string,
    /** Password or token for the cache registry, e.g. env:REGISTRY_TOKEN. */
    cachePassword?: Secret,
    /** Cache entries older than this many days are not reused. */
    cacheMaxAgeDays = 7,
    /** Platforms, comma-separated: linux/amd64, linux/arm64 or both; default the manifest's defaults.platforms (linux/amd64). */
    platforms?: string,
  ): Promise<string> {
    checkInputs({ slurmVersion, flavor, group, branch, commitSha: sha, registry, defaultBranch, platforms }, ["branch"]);
    const manifest = await this.manifest();
    const document = plan(manifest, { slurmVersion, flavor, group, platforms }, { branch, sha, registry, defaultBranch });
    const options = cacheOptions({
      registry: cacheRegistry,
      username: cacheUsername,
      password: cachePassword,
      maxAgeDays: cacheMaxAgeDays,
      scope: scopeOf(branch ?? "", defaultBranch),
    });
    if (!options) return JSON.stringify(document, null, 2);
    const cached = await prepareCache(this.dockerfiles, manifest, resolve(manifest, { slurmVersion, flavor, group, platforms }), options, createLogger());
    const cache = {
      registry: options.registry,
      scope: cached.plan ? cached.plan.scope : options.scope,
      disabled: cached.disabled,
      warnings: cached.warnings,
      entries: cached.plan ? summaryRows(cached.plan) : [],
    };
    return JSON.stringify({ ...document, cache }, null, 2);
  }

  /**
   * Build the group and push it under its commit and branch tags.
   * Each image is pushed once as <v>-<f>-<slug>-<sha8>, <v>-<f>-<slug>-latest
   * points at the same digest, and the report is printed; fails if any image
   * failed (no smoke tests: `ci` runs those).
   */
  @func({ cache: "never" })
  async publish(
    /** Registry path the images go under, e.g. registry.gitlab.com/group/project. */
    registry: string,
    /** The branch built from; its GitLab slug goes into the tags. */
    branch: string,
    /** The commit built from; its first 8 hex characters go into the tags. */
    commitSha: string,
    /** Registry user (in GitLab CI: $CI_REGISTRY_USER). */
    username: string,
    /** Registry password or token, e.g. env:CI_REGISTRY_PASSWORD. */
    password: Secret,
    /** Slurm release line: 25.11 or 26.05 (manifest.json's lines), or a line's pinned patch release. */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04, ubuntu26.04 or debian13. */
    flavor = "ubuntu24.04",
    /** Images to publish: core, extras or all. */
    group = "all",
    /** The commit's time (RFC 3339, e.g. $CI_COMMIT_TIMESTAMP): the images' created label. */
    commitTimestamp?: string,
    /** Platforms, comma-separated: linux/amd64, linux/arm64 or both (then each tag holds an image index); default the manifest's defaults.platforms (linux/amd64). */
    platforms?: string,
    /** Sign, attest (SBOM, provenance) and verify every pushed digest: off, key or keyless. */
    signing = "off",
    /** Key-based: the cosign private key, e.g. file:cosign.key. */
    signingKey?: Secret,
    /** Key-based: the key's password, e.g. env:COSIGN_PASSWORD. */
    signingPassword?: Secret,
    /** Keyless: an OIDC identity token for Fulcio, e.g. env:SIGSTORE_ID_TOKEN. */
    oidcToken?: Secret,
    /** Keyless: the Fulcio URL (default the public https://fulcio.sigstore.dev). */
    fulcioUrl?: string,
    /** Transparency log: a Rekor URL, or off (key-based only); default public Rekor for keyless, off for key-based. */
    rekorUrl?: string,
    /** Keyless: the identity to verify the certificate against, e.g. https://gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main. */
    certificateIdentity?: string,
    /** Keyless: the OIDC issuer to verify against, e.g. https://gitlab.com. */
    certificateOidcIssuer?: string,
  ): Promise<string> {
    const sign = { signing, signingKey, signingPassword, oidcToken, fulcioUrl, rekorUrl, certificateIdentity, certificateOidcIssuer };
    checkInputs(
      { registry, branch, commitSha, commitTimestamp, username, slurmVersion, flavor, group, platforms, ...signingFields(sign) },
      ["commitTimestamp", "username"],
      signingProblems(sign),
    );
    const run = await this.runArgs({ registry, branch, commitSha, commitTimestamp, username, password, slurmVersion, flavor, group, platforms });
    return outcome(await engineRun({ ...run, signing: signingArgs(sign) }, { check: false, push: "build", promote: false }));
  }

  /**
   * Move the group's production tags to what a default-branch commit pushed.
   * Each <v>-<f>-latest gets its commit tag's digest by manifest copy, all or
   * nothing: rolled back if any move fails or another writer changes a
   * production tag meanwhile.
   */
  @func({ cache: "never" })
  async promote(
    /** Registry path the images are under, e.g. registry.gitlab.com/group/project. */
    registry: string,
    /** The commit whose images are promoted (they must have been published). */
    commitSha: string,
    /** Registry user (in GitLab CI: $CI_REGISTRY_USER). */
    username: string,
    /** Registry password or token, e.g. env:CI_REGISTRY_PASSWORD. */
    password: Secret,
    /** The branch whose commit is promoted: it must be the default branch. */
    branch = "main",
    /** Slurm release line: 25.11 or 26.05 (manifest.json's lines), or a line's pinned patch release. */
    slurmVersion = "25.11",
    /** Linux flavor: ubuntu24.04, ubuntu26.04 or debian13. */
    flavor = "ubuntu24.04",
    /** Images to promote: core, extras or all. */
    group = "all",
    /** The default branch ($CI_DEFAULT_BRANCH): promotion only ever comes from it. */
    defaultBranch = "main",
    /** Refuse unless every image's signature and attestations verify with this public key (cosign.pub). */
    publicKey?: File,
    /** Refuse unless every image was signed keyless by this identity, e.g. https://gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main. */
    certificateIdentity?: string,
    /** With --certificate-identity: the issuer, e.g. https://gitlab.com. */
    certificateOidcIssuer?: string,
    /** The transparency log to check against: a Rekor URL, or off (key-based signatures made without one, the default). */
    rekorUrl?: string,
  ): Promise<string> {
    const verifying = publicKey !== undefined || !!certificateIdentity || !!certificateOidcIssuer;
    checkInputs(
      { registry, branch, defaultBranch, commitSha, username, slurmVersion, flavor, group, certificateIdentity, certificateOidcIssuer, rekorUrl },
      ["username"],
      verifying && !publicKey
        ? keylessVerifierProblems({ rekorUrl, certificateIdentity, certificateOidcIssuer })
        : [],
    );
    if (branch !== defaultBranch) {
      throw new InvalidInputError("branch", branch, [defaultBranch], `only the default branch ${JSON.stringify(defaultBranch)} is promoted (--default-branch)`);
    }
    const run = await this.runArgs({ registry, branch, commitSha, username, password, slurmVersion, flavor, group });
    const verify = verifying ? { mode: (publicKey ? "key" : "keyless") as SigningMode, publicKey, certificateIdentity, certificateOidcIssuer, rekorUrl } : undefined;
    return outcome(await engineRun({ ...run, defaultBranch, verify }, { check: false, push: "adopt", promote: true }));
  }

  /**
   * The GitLab job's one call: build, smoke-test, publish and promote a group.
   * With no branch it pushes nothing, off the default branch it promotes
   * nothing; it returns report.json, report.md and status (passed/failed).
   */
  @func({ cache: "never" })
  async ci(
    /** $CI_COMMIT_BRANCH; empty in merge-request and tag pipelines (then nothing is pushed). */
    branch: string,
    /** $CI_COMMIT_SHA. */
    commitSha: string,
    /** $CI_DEFAULT_BRANCH: its builds are promoted. */
    defaultBranch: string,
    /** $CI_PIPELINE_SOURCE: push, web, schedule, api, trigger, merge_request_event or another source GitLab sets. */
    pipelineSource: string,
    /** $CI_REGISTRY_IMAGE: the registry path the images go under. */
    registry: string,
    /** $CI_REGISTRY_USER. */
    username: string,
    /** env:CI_REGISTRY_PASSWORD. */
    password: Secret,
    /** $SLURM_VERSION: Slurm release line, 25.11 or 26.05, or a line's pinned patch release. */
    slurmVersion = "25.11",
    /** $LINUX_FLAVOR: ubuntu24.04, ubuntu26.04 or debian13. */
    flavor = "ubuntu24.04",
    /** $BUILD_GROUP: core, extras or all. */
    group = "all",
    /** $CI_COMMIT_TIMESTAMP: the images' created label. */
    commitTimestamp?: string,
    /** $BUILD_CACHE: on (reuse and record builds in the registry) or off (build everything). */
    buildCache = "on",
    /** The build-cache registry path; default <registry>/cache. */
    cacheRegistry?: string,
    /** $BUILD_CACHE_MAX_AGE_DAYS: cache entries older than this are rebuilt. */
    cacheMaxAgeDays = 7,
    /** $PLATFORMS: linux/amd64, linux/arm64 or both, comma-separated (then each tag holds an image index); default the manifest's defaults.platforms (linux/amd64). */
    platforms?: string,
    /** $SIGNING: sign, attest (SBOM, provenance) and verify every pushed digest before promotion: off, key or keyless. */
    signing = "off",
    /** Key-based: the cosign private key, e.g. file:$COSIGN_PRIVATE_KEY (a GitLab File variable). */
    signingKey?: Secret,
    /** Key-based: the key's password, e.g. env:COSIGN_PASSWORD (masked). */
    signingPassword?: Secret,
    /** Keyless: the job's OIDC token, e.g. env:SIGSTORE_ID_TOKEN (GitLab id_tokens, aud sigstore). */
    oidcToken?: Secret,
    /** $SIGNING_FULCIO_URL: keyless: the Fulcio (default the public https://fulcio.sigstore.dev). */
    fulcioUrl?: string,
    /** $SIGNING_REKOR_URL: a Rekor URL, or off (key-based only); default public Rekor for keyless, off for key-based. */
    rekorUrl?: string,
    /** Keyless: the identity the certificates must carry, e.g. $CI_PROJECT_URL//.gitlab-ci.yml@refs/heads/$CI_COMMIT_BRANCH. */
    certificateIdentity?: string,
    /** Keyless: the issuer the certificates must carry, e.g. $CI_SERVER_URL. */
    certificateOidcIssuer?: string,
    /** $CI_PIPELINE_URL: recorded in the provenance. */
    pipelineUrl?: string,
    /** $CI_JOB_URL: the provenance's invocation id. */
    jobUrl?: string,
  ): Promise<Directory> {
    const sign = { signing, signingKey, signingPassword, oidcToken, fulcioUrl, rekorUrl, certificateIdentity, certificateOidcIssuer };
    // Empty branch: a merge-request or tag pipeline (build and test only); GitLab leaves the timestamp unset at times.
    checkInputs(
      { branch, commitSha, defaultBranch, pipelineSource, registry, username, slurmVersion, flavor, group, commitTimestamp, platforms, pipelineUrl, jobUrl, ...signingFields(sign) },
      [...(branch === "" ? (["branch", "registry"] as const) : []), "username", "commitTimestamp", "pipelineUrl", "jobUrl", ...SIGNING_OPTIONAL],
      branch === "" ? [] : signingProblems(sign),
    );
    const run = await this.runArgs({ registry, branch, commitSha, commitTimestamp, username, password, slurmVersion, flavor, group, platforms });
    const cache = cacheOptions({
      switch: buildCache,
      registry: cacheRegistry || (registry ? `${noTrailingSlash(registry)}/cache` : undefined),
      username,
      password,
      maxAgeDays: cacheMaxAgeDays,
      scope: scopeOf(branch, defaultBranch),
    });
    const ci = { defaultBranch, pipelineSource, cache, signing: signingArgs(sign), pipelineUrl: pipelineUrl || undefined, jobUrl: jobUrl || undefined };
    const report = await engineRun({ ...run, ...ci }, { check: true, push: "build", promote: true });
    return reportDirectory(report);
  }

  /**
   * Check an image's cosign signature and its SBOM and provenance attestations.
   * With the public key (key-based) or the certificate identity and issuer
   * (keyless); prints what was verified and fails if anything is not.
   */
  @func({ cache: "never" })
  async verify(
    /** The image, by tag or by digest, e.g. registry.gitlab.com/group/project/slurmd@sha256:... */
    reference: string,
    /** Key-based: the public key (cosign.pub). */
    publicKey?: File,
    /** Keyless: the identity the certificate must carry, e.g. https://gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main. */
    certificateIdentity?: string,
    /** Keyless: the issuer the certificate must carry, e.g. https://gitlab.com. */
    certificateOidcIssuer?: string,
    /** The transparency log: a Rekor URL, or off (key-based signatures made without one, this module's key-based default). */
    rekorUrl?: string,
    /** Registry user, for a private registry. */
    username?: string,
    /** Registry password or token, e.g. env:REGISTRY_TOKEN. */
    password?: Secret,
  ): Promise<string> {
    const mode: SigningMode = publicKey ? "key" : "keyless";
    const fields = { reference, certificateIdentity, certificateOidcIssuer, rekorUrl, username };
    checkInputs(
      fields,
      [],
      publicKey ? [] : keylessVerifierProblems({ rekorUrl, certificateIdentity, certificateOidcIssuer }),
    );
    return verifyInEngine(await this.manifest(), { reference, mode, publicKey, certificateIdentity, certificateOidcIssuer, rekorUrl, username, password });
  }

  /** What publish, promote and ci share. */
  private async runArgs(args: Omit<EngineRun, "dockerfiles" | "manifest" | "defaultBranch" | "pipelineSource">): Promise<EngineRun> {
    const { manifest, siteManifestSha256 } = await this.loadedManifest();
    return { ...args, dockerfiles: this.dockerfiles, manifest, siteManifestSha256, defaultBranch: args.branch, pipelineSource: "api" };
  }

  /** The build cache of a local run (reads default-branch and local entries; writes none). */
  private async localCache(
    manifest: Manifest,
    resolved: Resolved,
    cache: { cacheRegistry?: string; cacheUsername?: string; cachePassword?: Secret; cacheMaxAgeDays: number },
  ): Promise<CachedBuild> {
    const options = cacheOptions({
      registry: cache.cacheRegistry,
      username: cache.cacheUsername,
      password: cache.cachePassword,
      maxAgeDays: cache.cacheMaxAgeDays,
      scope: { kind: "local" },
    });
    return prepareCache(this.dockerfiles, manifest, resolved, options, createLogger());
  }

  /** The manifest and the resolved selection, refused unless every download it needs is pinned. */
  private async buildable(selection: Selection): Promise<{ manifest: Manifest; resolved: Resolved }> {
    const manifest = await this.manifest();
    // One image (build): no platform asked means the first default one, not all of them.
    const platforms = selection.platforms ?? (selection.image ? sortPlatforms(manifest.defaults.platforms)[0] : undefined);
    const resolved = resolve(manifest, { ...selection, platforms });
    requireChecksums(manifest, resolved);
    return { manifest, resolved };
  }

  /** The pinned manifest, with the site manifest laid over it. */
  private async manifest(): Promise<Manifest> {
    return (await this.loadedManifest()).manifest;
  }

  /** The manifest, and the sha256 of the site manifest laid over it (for the provenance) when there is one. */
  private async loadedManifest(): Promise<{ manifest: Manifest; siteManifestSha256?: string }> {
    if (!this.siteManifest) return { manifest: loadManifest() };
    const text = await this.siteManifest.contents();
    return {
      manifest: loadManifest(parseOverride(text, "the --manifest file")),
      siteManifestSha256: createHash("sha256").update(text).digest("hex"),
    };
  }
}
