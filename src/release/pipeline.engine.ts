/**
 * The engine side of publish, promote and ci: wires Dagger containers (build,
 * smoke test, push with registry auth) into the plain functions of
 * publish.ts, promote.ts and ci.ts, and turns the report into a directory.
 * The password is a Dagger Secret: the engine gets it by reference for pushes
 * (withRegistryAuth); its
 * plaintext is read only in memory, for the registry client that copies tags.
 */
import { type Container, dag, type Directory, type Secret } from "@dagger.io/dagger";
import { imageContainer, readyPackages, recipeOf } from "../build/build.engine.js";
import { cacheRepository, writeEntry } from "../cache/cache.js";
import {
  adopt,
  type CachedBuild,
  type CacheOptions,
  cacheLabelsOf,
  onePlatform,
  prepareRunCaches,
  reusedContainer,
  reusedEntry,
  writePackages,
} from "../cache/cachedbuild.engine.js";
import { type GpuPluginsByArch, gpuPluginsByArch } from "../core/gpu.js";
import { createLogger, type Logger } from "../core/log.js";
import type { Manifest } from "../core/manifest.js";
import type { PlatformName } from "../core/platform.js";
import { type Resolved, requireChecksums, resolve } from "../build/plan.js";
import {
  cosignContainer,
  derivedPublicKey,
  dockerConfigSecret,
  engineRunner,
  type SigningArgs,
  signerFromArgs,
  type VerifyArgs,
  verifierFromArgs,
  verifyingRunner,
} from "../supply-chain/cosign.engine.js";
import { RegistryClient } from "../registry/client.js";
import { repositoryOf } from "../registry/reference.js";
import { pushes, runCi } from "./ci.js";
import { type Signing } from "./sign-published.js";
import { CONTAINER_PATHS, type Predicates, signTarget, verifiedOrWhy } from "../supply-chain/signing.js";
import { parseDpkgQuery } from "../supply-chain/dpkg.js";
import { dpkgQuery } from "../supply-chain/dpkg.engine.js";
import { spdxDocument } from "../supply-chain/sbom.js";
import { slsaProvenance } from "../supply-chain/provenance.js";
import { imageMaterials, MODULE_NAME, moduleVersion } from "../supply-chain/materials.js";
import { type GroupName, type ImageName, type ImageSpec, imageSpec } from "../core/catalog.js";
import { type CacheReport, type PackageSetReport, renderJson, renderMarkdown, type Report } from "./report.js";
import { smokeScript } from "../build/smoke.js";
import { noTrailingSlash } from "../core/inputs.js";

export interface EngineRun {
  dockerfiles: Directory;
  manifest: Manifest;
  slurmVersion: string;
  flavor: string;
  group: string;
  /** Comma-separated platforms; absent: the manifest's defaults.platforms. */
  platforms?: string;
  /** Registry path, e.g. registry.gitlab.com/group/project (CI_REGISTRY_IMAGE). */
  registry: string;
  /** Empty in merge-request and tag pipelines: then nothing is pushed. */
  branch: string;
  commitSha: string;
  /** The commit's time (RFC 3339): the images' created label, the same on every re-run. */
  commitTimestamp?: string;
  defaultBranch: string;
  pipelineSource: string;
  username: string;
  password: Secret;
  /** The registry build cache; null or absent: build everything. */
  cache?: CacheOptions | null;
  /** Sign, attest and verify every pushed digest before promotion; absent or mode off: not signed. */
  signing?: SigningArgs;
  /** Promotion alone: check every image's signature and attestations with these before any move. */
  verify?: Omit<VerifyArgs, "reference" | "username" | "password"> | undefined;
  /** The sha256 of the site manifest (--manifest) laid over the pinned one, for the provenance. */
  siteManifestSha256?: string | undefined;
  /** CI_PIPELINE_URL and CI_JOB_URL, for the provenance. */
  pipelineUrl?: string | undefined;
  jobUrl?: string | undefined;
}

/** The predicates attested on one digest of an image (platform null: the image, or an index). */
export type DocumentsFn = (image: string, digest: string, platform: PlatformName | null) => Promise<Predicates>;

/**
 * Signing in an engine run: cosign's pinned container with the secrets
 * mounted, the verifier (key-based: the public key derived from the private
 * key, shown in the report), and the documents of each digest.
 */
export async function engineSigning(run: EngineRun, documents: DocumentsFn): Promise<Signing | undefined> {
  const args = run.signing;
  const signer = args ? signerFromArgs(args) : null;
  if (!args || !signer) return undefined;
  const verifier = verifierFromArgs(args);
  const publicKey = signer.kind === "key" ? derivedPublicKey(run.manifest, args) : undefined;
  const registryAuth = dockerConfigSecret(registryHost(run.registry), run.username, await run.password.plaintext());
  const base = cosignContainer(run.manifest, args, registryAuth, publicKey);
  return {
    describe: {
      mode: signer.kind,
      fulcioUrl: signer.kind === "keyless" ? signer.fulcioUrl : null,
      rekorUrl: signer.rekorUrl,
      certificateIdentity: verifier.kind === "keyless" ? verifier.certificateIdentity : null,
      certificateOidcIssuer: verifier.kind === "keyless" ? verifier.certificateOidcIssuer : null,
      publicKey: publicKey ? await publicKey.contents() : null,
    },
    sign: (target) =>
      signTarget(target, {
        signer,
        verifier,
        paths: CONTAINER_PATHS,
        run: engineRunner(base),
        predicates: (digest, platform) => documents(target.image, digest, platform as PlatformName | null),
      }),
  };
}

export interface Stages {
  /** Build and smoke-test every image first. */
  check: boolean;
  /** "build": push the built images; "adopt": take the digests already under the commit tag. */
  push: "build" | "adopt";
  promote: boolean;
}

/** The registry host of a registry path (what withRegistryAuth wants). */
export function registryHost(registry: string): string {
  return repositoryOf(registry, "probe").registry;
}

/** The image with its smoke-check script run in it (entrypoint not used). */
export function smokeTested(container: Container, image: string, slurmVersion: string, gpuPlugins: GpuPluginsByArch): Container {
  return container.withExec(["sh", "-c", smokeScript(image, slurmVersion, gpuPlugins)]);
}

/** The image, ready to publish with the registry credentials. */
export function publishable(container: Container, registry: string, username: string, password: Secret): Container {
  return container.withRegistryAuth(registryHost(registry), username, password);
}

/**
 * Pushes one image: a single platform as it is, several as one OCI image
 * index (Dagger's publish with platform variants), the tag on the index.
 */
export function publishIndex(variants: readonly Container[], ref: string, registry: string, username: string, password: Secret): Promise<string> {
  if (variants.length === 1) return publishable(variants[0] as Container, registry, username, password).publish(ref);
  return publishable(dag.container(), registry, username, password).publish(ref, { platformVariants: [...variants] });
}

/**
 * A run's images on the engine: per platform the recipe and the package set
 * (built or pulled, made once, before the first image that is built), and
 * each image's container, or one per platform.
 */
class RunImages {
  private readonly packages = new Map<PlatformName, ReturnType<typeof readyPackages>>();

  constructor(
    private readonly run: EngineRun,
    private readonly resolved: Resolved,
    private readonly caches: ReadonlyMap<PlatformName, CachedBuild>,
  ) {}

  /** The run's first platform (the only one whose cache may reuse images). */
  get first(): PlatformName {
    return this.resolved.platforms[0] as PlatformName;
  }

  cachedOf(platform: PlatformName): CachedBuild {
    return this.caches.get(platform) as CachedBuild;
  }

  /** One image's container for one platform (the first unless told). */
  container = async (name: string, platform: PlatformName = this.first): Promise<Container> =>
    imageContainer(this.recipe(platform), this.resolved.images.find((i) => i.name === name) as ImageSpec, {
      provenance: { revision: this.run.commitSha, created: this.run.commitTimestamp },
      packages: await this.ready(platform),
      extraLabels: cacheLabelsOf(this.cachedOf(platform), name),
    });

  /** Every platform's container of an image (one, on a single-platform run). */
  variants(name: string): Promise<Container[]> {
    return Promise.all(this.resolved.platforms.map((platform) => this.container(name, platform)));
  }

  private recipe(platform: PlatformName) {
    return recipeOf(this.run.dockerfiles, this.run.manifest, this.resolved, { platform, baseImage: this.cachedOf(platform).baseImage });
  }

  private ready(platform: PlatformName): ReturnType<typeof readyPackages> {
    if (!this.packages.has(platform)) this.packages.set(platform, readyPackages(this.recipe(platform), this.cachedOf(platform).packages));
    return this.packages.get(platform) as ReturnType<typeof readyPackages>;
  }
}

/** The run's registry client, made once when first asked for (the password's plaintext read then, in memory only). */
function lazyClient(run: EngineRun, log: Logger): () => Promise<RegistryClient> {
  let client: Promise<RegistryClient> | undefined;
  return () => (client ??= run.password.plaintext().then((password) => new RegistryClient({ username: run.username, password, logger: log })));
}

/** Run the stages against the engine and return the report (never throws for a failed image). */
export async function engineRun(run: EngineRun, stages: Stages): Promise<Report> {
  const runStarted = Date.now();
  const resolved: Resolved = resolve(run.manifest, { slurmVersion: run.slurmVersion, flavor: run.flavor, group: run.group, platforms: run.platforms });
  if (stages.push === "build") requireChecksums(run.manifest, resolved);
  const log = createLogger();
  const cacheStarted = Date.now();
  const caches = await prepareRunCaches(run.dockerfiles, run.manifest, resolved, stages.push === "build" ? (run.cache ?? null) : null, log);
  const lookupMs = Date.now() - cacheStarted;
  const images = new RunImages(run, resolved, caches);
  /** The first platform's cache: on a run of several platforms it reuses no image. */
  const cached = images.cachedOf(images.first);
  const getClient = lazyClient(run, log);
  const pushing = pushes(run.branch, run.pipelineSource);
  const signing =
    stages.push === "build" && pushing ? await engineSigning(run, documentsOf(run, resolved, cached, images.container, new Date(runStarted).toISOString())) : undefined;
  const verify = run.verify
    ? verifiedOrWhy(
        verifierFromArgs(run.verify),
        CONTAINER_PATHS,
        await verifyingRunner(run.manifest, registryHost(run.registry), { ...run.verify, username: run.username, password: run.password }),
      )
    : undefined;
  const gpuPlugins = gpuPluginsByArch(resolved.flavor);
  const report = await runCi({
    ...(signing ? { signing } : {}),
    ...(verify ? { verify } : {}),
    context: {
      branch: run.branch,
      commitSha: run.commitSha,
      defaultBranch: run.defaultBranch,
      pipelineSource: run.pipelineSource,
      registry: run.registry,
      slurmVersion: run.slurmVersion,
      flavor: run.flavor,
      group: run.group,
    },
    line: resolved.line,
    images: resolved.images.map((i) => i.name),
    ...(stages.check
      ? {
          check: async (image: string) => {
            // A reused image passed these checks in the run that wrote its entry.
            if (reusedEntry(cached, image)) return;
            await Promise.all((await images.variants(image)).map((variant) => smokeTested(variant, image, resolved.slurm.version, gpuPlugins).sync()));
          },
        }
      : {}),
    push:
      stages.push === "build"
        ? async (image, ref) => {
            const entry = reusedEntry(cached, image);
            if (entry) return adopt(cached, entry, ref);
            return publishIndex(await images.variants(image), ref, run.registry, run.username, run.password);
          }
        : async (_image, ref) => `${ref}@${(await (await getClient()).getManifest(ref)).digest}`,
    client: getClient,
    promote: stages.promote,
    moveBranchLatest: stages.push === "build",
    log,
  });
  return withCache(report, await writeCache(run, resolved, caches, report, log), caches, lookupMs);
}

interface CacheWrites {
  /** The package set written, per platform. */
  packages: Map<PlatformName, string>;
  images: Record<string, string>;
  warnings: string[];
  writeMs: number;
}

/**
 * After a run whose images all passed their checks and were pushed: records
 * the images it built (manifest copies into the cache repository) and each
 * platform's package set it built. Failures are warnings.
 */
async function writeCache(
  run: EngineRun,
  resolved: Resolved,
  caches: ReadonlyMap<PlatformName, CachedBuild>,
  report: Report,
  log: Logger,
): Promise<CacheWrites> {
  const writes: CacheWrites = { packages: new Map(), images: {}, warnings: [], writeMs: 0 };
  if (!report.ok || report.mode === "build-only") return writes;
  const started = Date.now();
  for (const [platform, cached] of caches) {
    const plan = cached.plan;
    if (!plan) continue;
    const client = await cached.client().catch(() => null);
    if (!client) continue;
    for (const row of report.images) {
      // Only the images this cache looked up (none on a run of several platforms).
      if (!(row.image in plan.images) || reusedEntry(cached, row.image) || !row.digest) continue;
      const key = plan.keys.images[row.image];
      if (!key) continue;
      const source = { ...repositoryOf(run.registry, row.image), digest: row.digest };
      const written = await writeEntry({ client, source, repository: cacheRepository(plan.registry, row.image), key: key.key, scope: plan.scope, log });
      if (written.ref) writes.images[row.image] = written.ref;
      if (written.error) writes.warnings.push(written.error);
    }
    if (!plan.packages.hit) {
      try {
        writes.packages.set(platform, await writePackages(cached, run.dockerfiles, run.manifest, onePlatform(resolved, platform)));
      } catch (error) {
        const text = `cache write of the ${platform} package set failed: ${(error as Error).message}`;
        log.warn({}, text);
        writes.warnings.push(text);
      }
    }
  }
  writes.writeMs = Date.now() - started;
  return writes;
}

/** One platform's package-set row of the report. */
function packageSetRow(cached: CachedBuild, written: string | null, platform?: PlatformName): PackageSetReport | null {
  const plan = cached.plan;
  if (!plan) return null;
  return {
    ...(platform ? { platform } : {}),
    key: plan.keys.packages.key,
    hit: plan.packages.hit,
    from: plan.packages.hit ? plan.packages.entry.ref : null,
    reason: plan.packages.hit ? null : plan.packages.reason,
    changed: plan.packages.hit ? null : plan.packages.changed,
    written,
  };
}

/** The report with its build-cache section (one package-set row per platform on a run of several). */
function withCache(report: Report, writes: CacheWrites, caches: ReadonlyMap<PlatformName, CachedBuild>, lookupMs: number): Report {
  const all = [...caches.entries()];
  const [first, cached] = all[0] as [PlatformName, CachedBuild];
  const several = all.length > 1;
  const plan = cached.plan;
  const section: CacheReport = {
    used: plan !== null,
    disabled: cached.disabled,
    registry: plan?.registry ?? null,
    scope: plan ? (plan.scope.kind === "branch" ? `branch:${plan.scope.slug}` : plan.scope.kind) : null,
    maxAgeDays: plan?.maxAgeDays ?? null,
    lookupMs,
    writeMs: writes.writeMs,
    packages: several ? null : packageSetRow(cached, writes.packages.get(first) ?? null),
    ...(several
      ? {
          packageSets: all.flatMap(([platform, c]) => {
            const row = packageSetRow(c, writes.packages.get(platform) ?? null, platform);
            return row ? [row] : [];
          }),
        }
      : {}),
    images: plan
      ? Object.entries(plan.images).map(([image, result]) => ({
          image,
          key: plan.keys.images[image]?.key ?? "",
          reused: result.hit,
          from: result.hit ? result.entry.ref : null,
          reason: result.hit ? null : result.reason,
          changed: result.hit ? null : result.changed,
          written: writes.images[image] ?? null,
        }))
      : [],
    warnings: [...new Set([...all.flatMap(([, c]) => c.warnings), ...writes.warnings])],
  };
  // A reused image was neither built nor checked in this run (its entry's run did both).
  const images = report.images.map((row) => (reusedEntry(cached, row.image) ? { ...row, built: null, buildMs: null } : row));
  return { ...report, images, cache: section };
}

/**
 * The documents attested on each digest of an image: its SPDX SBOM (the
 * Debian packages that dpkg-query lists inside that platform's container,
 * plus the pinned inputs it holds) and its SLSA v1 provenance (this module
 * as builder, the run's parameters, the pinned inputs and the base image by
 * digest as materials). An image index carries its first platform's
 * documents; each platform's digest carries its own.
 */
export function documentsOf(
  run: EngineRun,
  resolved: Resolved,
  cached: CachedBuild,
  containerOf: (image: string, platform: PlatformName) => Promise<Container>,
  startedOn: string,
): DocumentsFn {
  const baseDigest = cached.baseImage?.slice(cached.baseImage.indexOf("@") + 1);
  return async (image, digest, platform) => {
    const chosen = platform ?? (resolved.platforms[0] as PlatformName);
    const spec = imageSpec(image);
    const entry = reusedEntry(cached, image);
    const container = entry ? reusedContainer(entry, cached.options, chosen) : await containerOf(image, chosen);
    const materials = imageMaterials(run.manifest, resolved, spec, chosen, baseDigest && !resolved.flavor.baseDigest ? { baseDigest } : {});
    const now = new Date().toISOString();
    const spdxjson = spdxDocument({
      image,
      version: resolved.slurm.version,
      flavor: run.flavor,
      platform: chosen,
      digest,
      repository: noTrailingSlash(run.registry),
      packages: parseDpkgQuery(await dpkgQuery(container)),
      inputs: materials,
      created: run.commitTimestamp || now,
    });
    const slsaprovenance1 = slsaProvenance({
      image: image as ImageName,
      digest,
      platform: chosen,
      version: run.slurmVersion,
      flavor: run.flavor,
      group: run.group as GroupName,
      registry: run.registry,
      builder: { id: `${run.manifest.project.source}/-/runners`, version: { [MODULE_NAME]: moduleVersion() } },
      invocation: {
        commit: run.commitSha,
        branch: run.branch,
        defaultBranch: run.defaultBranch,
        pipelineSource: run.pipelineSource,
        repository: run.manifest.project.source,
        ...(run.pipelineUrl ? { pipelineUrl: run.pipelineUrl } : {}),
        ...(run.jobUrl ? { jobUrl: run.jobUrl } : {}),
      },
      materials,
      ...(run.siteManifestSha256 ? { siteManifestSha256: run.siteManifestSha256 } : {}),
      ...(entry ? { cache: { reused: true, entry: entry.ref } } : {}),
      startedOn,
      finishedOn: now,
    });
    return { spdxjson, slsaprovenance1 };
  };
}

/** report.json, report.md and status ("passed" or "failed") in a directory; cosign.pub too when the run signed with a key. */
export function reportDirectory(report: Report): Directory {
  const dir = dag
    .directory()
    .withNewFile("report.json", renderJson(report))
    .withNewFile("report.md", renderMarkdown(report))
    .withNewFile("status", report.ok ? "passed\n" : "failed\n");
  return report.signing?.publicKey ? dir.withNewFile("cosign.pub", report.signing.publicKey) : dir;
}

/** The report's Markdown, or an error carrying it when the run failed (non-zero exit on the CLI). */
export function outcome(report: Report): string {
  const text = renderMarkdown(report);
  if (!report.ok) throw new Error(text);
  return text;
}
