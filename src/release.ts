/**
 * Publish, promote and the CI run as plain functions. The engine's parts
 * (building, smoke-testing, pushing a container) come in as functions, so the
 * same code runs inside Dagger and, in the tests, against a real registry.
 *
 * - publish: push each image once under its commit tag, read the digest back,
 *   set the branch -latest tag to that digest by manifest copy (no re-push).
 * - promote: default branch only; check every image of the run first, then
 *   move each production tag to exactly that digest; all or nothing, with
 *   rollback of tags already moved if a later move fails.
 * - runCi: build and smoke-test everything, then publish, then promote, and
 *   return the report.
 */
import pLimit from "p-limit";
import { silentLogger, type Logger } from "./log.js";
import { formatRef, parseRef, type RegistryClient } from "./registry.js";
import { imageRow, type ImageReport, type PromotionResult, type Report, type RunContext, type TagMove } from "./report.js";
import { type BranchTags, branchTags, refSlug } from "./tags.js";

/** Pushes one image to `ref` (a tag reference) and returns `ref@sha256:...`. */
export type PushFn = (image: string, ref: string) => Promise<string>;

export interface PublishedImage {
  image: string;
  ok: boolean;
  /** The digest the push returned and the registry gave back. */
  digest: string | null;
  mediaType: string | null;
  sizeBytes: number | null;
  /** References set by this run: commit tag, then branch -latest. */
  references: string[];
  durationMs: number;
  error: string | null;
}

export interface PublishOptions {
  /** Registry path the images go under, e.g. registry.gitlab.com/group/project. */
  registry: string;
  images: readonly string[];
  tags: Pick<BranchTags, "commit" | "branchLatest">;
  push: PushFn;
  client: RegistryClient;
  /** Point the branch -latest tag at the digest (default true). */
  moveBranchLatest?: boolean;
  /** Images pushed at once (default 4). */
  concurrency?: number;
  log?: Logger;
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

function repoOf(registry: string, image: string) {
  const r = parseRef(`${registry.replace(/\/+$/, "")}/${image}`);
  return { registry: r.registry, repository: r.repository };
}

/** Push every image once, check its digest, and point the branch -latest tag at it. */
export async function publish(options: PublishOptions): Promise<PublishedImage[]> {
  const log = options.log ?? silentLogger();
  const limit = pLimit(options.concurrency ?? 4);
  return Promise.all(
    options.images.map((image) =>
      limit(async (): Promise<PublishedImage> => {
        const started = Date.now();
        const repo = repoOf(options.registry, image);
        const commitRef = formatRef({ ...repo, tag: options.tags.commit });
        const row: PublishedImage = {
          image,
          ok: false,
          digest: null,
          mediaType: null,
          sizeBytes: null,
          references: [],
          durationMs: 0,
          error: null,
        };
        try {
          const pushed = await options.push(image, commitRef);
          const digest = parseRef(pushed).digest;
          if (!digest) throw new Error(`push ${commitRef} returned no digest (${JSON.stringify(pushed)})`);
          const back = await options.client.getManifest(commitRef);
          if (back.digest !== digest) {
            throw new Error(`read back ${commitRef}: the registry has ${back.digest}, the push returned ${digest}`);
          }
          row.digest = digest;
          row.mediaType = back.mediaType;
          row.references.push(commitRef);
          row.sizeBytes = await options.client.imageSize(back);
          if (options.moveBranchLatest ?? true) {
            await options.client.copyManifest({ ...repo, digest }, options.tags.branchLatest);
            row.references.push(formatRef({ ...repo, tag: options.tags.branchLatest }));
          }
          row.ok = true;
          log.info({ image, digest, refs: row.references }, "published");
        } catch (error) {
          row.error = message(error);
          log.error({ image, err: row.error }, "publish failed");
        }
        row.durationMs = Date.now() - started;
        return row;
      }),
    ),
  );
}

export interface PromoteOptions {
  registry: string;
  /** Every image of the run: each must have been published and checked. */
  images: readonly string[];
  published: readonly PublishedImage[];
  /** The production tag, e.g. 25.11-ubuntu24.04-latest; null when not on the default branch. */
  productionTag: string | null;
  /** The commit tag each image was pushed under. */
  commitTag: string;
  branch: string;
  defaultBranch: string;
  client: RegistryClient;
  concurrency?: number;
  log?: Logger;
}

function emptyPromotion(attempted: boolean, reason: string): PromotionResult {
  return { attempted, promoted: false, reason, moved: [], unchanged: [], rolledBack: [], notRestored: [], failed: [] };
}

/**
 * Move the production tag of every image to this run's digest, or none of
 * them. Checks first (each digest fetched by digest and hashed, each commit
 * tag read back); then copies manifests; if any copy fails, puts the tags
 * already moved back where they were.
 */
export async function promote(options: PromoteOptions): Promise<PromotionResult> {
  const log = options.log ?? silentLogger();
  const { client } = options;
  if (!options.productionTag || options.branch !== options.defaultBranch) {
    return emptyPromotion(
      false,
      `branch ${JSON.stringify(options.branch)} is not the default branch ${JSON.stringify(options.defaultBranch)}: production tags untouched`,
    );
  }
  const productionTag = options.productionTag;
  const result = emptyPromotion(true, "");
  const byImage = new Map(options.published.map((p) => [p.image, p]));
  for (const image of options.images) {
    const p = byImage.get(image);
    if (!p || !p.ok || !p.digest) {
      result.failed.push({ image, error: p?.error ?? "not published in this run" });
    }
  }
  if (result.failed.length > 0) {
    result.reason = `${result.failed.length} of ${options.images.length} images failed (${result.failed
      .map((f) => f.image)
      .join(", ")}): no production tag moved`;
    log.error({ failed: result.failed.map((f) => f.image) }, "promotion refused");
    return result;
  }

  // 1. Verify everything before touching anything.
  const limit = pLimit(options.concurrency ?? 4);
  interface Step {
    image: string;
    digest: string;
    ref: string;
    previous: string | null;
  }
  const checks = await Promise.all(
    options.images.map((image) =>
      limit(async (): Promise<Step | { image: string; error: string }> => {
        const repo = repoOf(options.registry, image);
        const digest = byImage.get(image)?.digest as string;
        try {
          await client.getManifest({ ...repo, digest }); // hashes the bytes against the digest
          const commit = await client.headManifest({ ...repo, tag: options.commitTag });
          if (commit?.digest !== digest) {
            throw new Error(
              `${formatRef({ ...repo, tag: options.commitTag })} points at ${commit?.digest ?? "nothing"}, this run pushed ${digest}`,
            );
          }
          const previous = (await client.headManifest({ ...repo, tag: productionTag }))?.digest ?? null;
          return { image, digest, ref: formatRef({ ...repo, tag: productionTag }), previous };
        } catch (error) {
          return { image, error: message(error) };
        }
      }),
    ),
  );
  const steps: Step[] = [];
  for (const c of checks) {
    if ("error" in c) result.failed.push(c);
    else steps.push(c);
  }
  if (result.failed.length > 0) {
    result.reason = `verification failed for ${result.failed.map((f) => f.image).join(", ")}: no production tag moved`;
    log.error({ failed: result.failed }, "promotion refused");
    return result;
  }

  // 2. Move, then roll back on any failure.
  const outcomes = await Promise.all(
    steps.map((s) =>
      limit(async () => {
        const move: TagMove = { image: s.image, ref: s.ref, from: s.previous, to: s.digest };
        if (s.previous === s.digest) return { move, state: "unchanged" as const };
        try {
          const repo = repoOf(options.registry, s.image);
          await client.copyManifest({ ...repo, digest: s.digest }, productionTag);
          return { move, state: "moved" as const };
        } catch (error) {
          return { move, state: "failed" as const, error: message(error) };
        }
      }),
    ),
  );
  for (const o of outcomes) {
    if (o.state === "unchanged") result.unchanged.push(o.move);
    else if (o.state === "moved") result.moved.push(o.move);
    else result.failed.push({ image: o.move.image, error: o.error ?? "failed" });
  }
  if (result.failed.length === 0) {
    result.promoted = true;
    result.reason =
      result.moved.length > 0
        ? `${result.moved.length} production tags moved, ${result.unchanged.length} already in place`
        : `all ${result.unchanged.length} production tags were already at this run's digests`;
    log.info({ moved: result.moved.length, unchanged: result.unchanged.length }, "promoted");
    return result;
  }
  log.error({ failed: result.failed }, "promotion failed; rolling back");
  for (const m of result.moved) {
    const repo = repoOf(options.registry, m.image);
    try {
      if (m.from) {
        await client.copyManifest({ ...repo, digest: m.from }, productionTag);
        result.rolledBack.push({ ...m, from: m.to, to: m.from });
      } else if ((await client.deleteTag({ ...repo, tag: productionTag })) === "deleted") {
        result.rolledBack.push({ ...m, from: m.to, to: null });
      } else {
        result.notRestored.push({
          ...m,
          why: "the tag did not exist before and this registry cannot delete a tag alone (deleting by digest would remove the commit tags too)",
        });
      }
    } catch (error) {
      result.notRestored.push({ ...m, why: `rollback failed: ${message(error)}` });
    }
  }
  result.moved = [];
  result.reason =
    `moving the production tag failed for ${result.failed.map((f) => f.image).join(", ")}; ` +
    `${result.rolledBack.length} tags rolled back` +
    (result.notRestored.length > 0 ? `, ${result.notRestored.length} could NOT be restored` : "");
  return result;
}

/** Builds and smoke-tests one image; throws on failure. */
export type CheckFn = (image: string) => Promise<void>;

export interface CiOptions {
  context: RunContext;
  /** Slurm release line used in tags (e.g. 25.11) when it differs from context.slurmVersion. */
  line?: string;
  images: readonly string[];
  /** Build and smoke-test; when absent, that stage is skipped (publish, promote). */
  check?: CheckFn;
  push: PushFn;
  /** Made only when something is pushed. */
  client: () => RegistryClient | Promise<RegistryClient>;
  /** Promote on the default branch (default true). */
  promote?: boolean;
  /** Point the branch -latest tags at this run's digests (default true). */
  moveBranchLatest?: boolean;
  concurrency?: number;
  log?: Logger;
}

/** Pipelines that must never push: GitLab sets no CI_COMMIT_BRANCH in them anyway. */
const NO_PUSH_SOURCES = new Set(["merge_request_event", "external_pull_request_event"]);

/**
 * The whole CI run: build and smoke-test every image; if all pass and the
 * pipeline is a branch pipeline, publish them; on the default branch, promote.
 * Never throws for a failed image: the report says what failed (ok: false).
 */
export async function runCi(options: CiOptions): Promise<Report> {
  const log = options.log ?? silentLogger();
  const started = Date.now();
  const c = options.context;
  const rows = new Map(options.images.map((image) => [image, imageRow(image)]));
  const errors: string[] = [];
  const pushing = c.branch !== "" && !NO_PUSH_SOURCES.has(c.pipelineSource);
  let tags: BranchTags | null = null;
  let promotion: PromotionResult | null = null;
  const finish = (summary: string, ok: boolean, mode: Report["mode"]): Report => ({
    schemaVersion: 1,
    ok,
    mode,
    summary,
    context: c,
    tags: tags ? { commit: tags.commit, branchLatest: tags.branchLatest, production: tags.production } : null,
    images: [...rows.values()],
    promotion,
    errors,
    startedAt: new Date(started).toISOString(),
    finishedAt: new Date().toISOString(),
    durationMs: Date.now() - started,
  });
  const promoting = (options.promote ?? true) && c.branch === c.defaultBranch;
  const mode: Report["mode"] = !pushing ? "build-only" : promoting ? "publish-and-promote" : "publish";

  if (pushing) {
    try {
      if (!c.registry) throw new Error("no registry given: pass --registry (CI_REGISTRY_IMAGE)");
      parseRef(c.registry);
      tags = branchTags({
        line: options.line ?? c.slurmVersion,
        flavor: c.flavor,
        branch: c.branch,
        sha: c.commitSha,
        defaultBranch: c.defaultBranch,
      });
    } catch (error) {
      errors.push(message(error));
      return finish(`refused before building: ${message(error)}`, false, mode);
    }
  }

  // 1. Build and smoke-test everything.
  const limit = pLimit(options.concurrency ?? 4);
  const check = options.check;
  await Promise.all(
    options.images.map((image) =>
      limit(async () => {
        if (!check) return;
        const row = rows.get(image) as ImageReport;
        const t = Date.now();
        try {
          await check(image);
          row.built = true;
        } catch (error) {
          row.built = false;
          row.error = `build or smoke test failed: ${message(error)}`;
          log.error({ image, err: row.error }, "build failed");
        }
        row.buildMs = Date.now() - t;
      }),
    ),
  );
  const broken = [...rows.values()].filter((r) => r.built === false).map((r) => r.image);
  if (broken.length > 0) {
    return finish(
      `${broken.length} of ${rows.size} images failed to build or pass smoke tests (${broken.join(", ")}): nothing pushed, no tag moved`,
      false,
      mode,
    );
  }
  if (!pushing || !tags) {
    const why = c.branch === "" ? "no branch (merge-request or tag pipeline)" : `pipeline source ${c.pipelineSource}`;
    return finish(`all ${rows.size} images built and smoke-tested; ${why}: nothing pushed`, true, mode);
  }

  // 2. Publish.
  let client: RegistryClient;
  try {
    client = await options.client();
  } catch (error) {
    errors.push(message(error));
    return finish(`no registry client: ${message(error)}`, false, mode);
  }
  const published = await publish({
    registry: c.registry,
    images: options.images,
    tags,
    push: options.push,
    client,
    moveBranchLatest: options.moveBranchLatest ?? true,
    concurrency: options.concurrency ?? 4,
    log,
  });
  for (const p of published) {
    const row = rows.get(p.image) as ImageReport;
    row.pushed = p.digest !== null;
    row.digest = p.digest;
    row.mediaType = p.mediaType;
    row.sizeBytes = p.sizeBytes;
    row.references = [...p.references];
    row.publishMs = p.durationMs;
    row.error = p.error;
  }
  const failedPush = published.filter((p) => !p.ok).map((p) => p.image);

  // 3. Promote (default branch only; refuses by itself if anything failed).
  if (promoting) {
    promotion = await promote({
      registry: c.registry,
      images: options.images,
      published,
      productionTag: tags.production,
      commitTag: tags.commit,
      branch: c.branch,
      defaultBranch: c.defaultBranch,
      client,
      concurrency: options.concurrency ?? 4,
      log,
    });
    if (promotion.promoted) {
      for (const m of [...promotion.moved, ...promotion.unchanged]) {
        const row = rows.get(m.image) as ImageReport;
        row.promoted = true;
        row.references.push(m.ref);
      }
    } else {
      for (const f of promotion.failed) {
        const row = rows.get(f.image) as ImageReport;
        row.error ??= `promotion failed: ${f.error}`;
      }
    }
  }
  const ok = failedPush.length === 0 && (promotion === null || promotion.promoted);
  const slug = refSlug(c.branch);
  let summary: string;
  if (failedPush.length > 0) {
    summary = `${failedPush.length} of ${rows.size} images failed to publish (${failedPush.join(", ")})`;
    summary += promotion ? "; no production tag moved" : "";
  } else if (promotion && !promotion.promoted) {
    summary = `all ${rows.size} images published under ${slug}; promotion failed: ${promotion.reason}`;
  } else {
    summary = `all ${rows.size} images published as ${tags.commit}`;
    if (options.moveBranchLatest ?? true) summary += ` and ${tags.branchLatest}`;
    if (promotion) summary += `; promoted to ${tags.production}`;
  }
  return finish(summary, ok, mode);
}
