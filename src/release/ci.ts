/**
 * The CI run as a plain function: build and smoke-test everything, then (a
 * branch pipeline) publish, sign, and (the default branch) promote, and return
 * the report. The engine's parts (building, smoke-testing, pushing a
 * container, signing) come in as functions, so the same code runs inside
 * Dagger and, in the tests, against a real registry.
 */
import pLimit from "p-limit";
import { messageOf as message } from "../core/errors.js";
import { silentLogger, type Logger } from "../core/log.js";
import { type BranchTags, branchTags, refSlug } from "../core/tags.js";
import type { RegistryClient } from "../registry/client.js";
import { parseRef } from "../registry/reference.js";
import { emptyPromotion, promote, type VerifyFn } from "./promote.js";
import { publish, type PushFn } from "./publish.js";
import { imageRow, type ImageReport, type PromotionResult, type Report, type RunContext, type SigningReport } from "./report.js";
import { type Signing, signPublished } from "./sign-published.js";

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
  /** Promotion's pause before its last read-back (default 2000 ms, see PromoteOptions). */
  settleMs?: number;
  /** Sign, attest and verify every pushed digest before any promotion; absent: signing off. */
  signing?: Signing;
  /** Promotion checks every image's signature and attestations first (promote alone); absent: not checked. */
  verify?: VerifyFn;
  concurrency?: number;
  log?: Logger;
}

/** Pipelines that must never push: GitLab sets no CI_COMMIT_BRANCH in them anyway. */
const NO_PUSH_SOURCES = new Set(["merge_request_event", "external_pull_request_event"]);

/** Whether a pipeline pushes: a branch pipeline (a branch, and not a merge-request source). */
export function pushes(branch: string, pipelineSource: string): boolean {
  return branch !== "" && !NO_PUSH_SOURCES.has(pipelineSource);
}

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
  const pushing = pushes(c.branch, c.pipelineSource);
  let tags: BranchTags | null = null;
  let promotion: PromotionResult | null = null;
  let signing: SigningReport | null = null;
  const finish = (summary: string, ok: boolean, mode: Report["mode"]): Report => ({
    schemaVersion: 1,
    ok,
    mode,
    summary,
    context: c,
    tags: tags ? { commit: tags.commit, branchLatest: tags.branchLatest, production: tags.production } : null,
    images: [...rows.values()],
    promotion,
    ...(signing ? { signing } : {}),
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
    row.platforms = [...p.platforms];
    row.references = [...p.references];
    row.publishMs = p.durationMs;
    row.error = p.error;
  }
  const failedPush = published.filter((p) => !p.ok).map((p) => p.image);

  // 3. Sign, attest and verify every pushed digest, before any promotion.
  if (options.signing) {
    if (failedPush.length > 0) {
      signing = { ...options.signing.describe, ok: false, skipped: `${failedPush.join(", ")} failed to publish: nothing signed`, images: [] };
    } else {
      signing = await signPublished(options.signing, c.registry, published, client, log);
      for (const r of signing.images) {
        if (r.error) (rows.get(r.image) as ImageReport).error ??= `signing failed: ${r.error}`;
      }
    }
  }
  const unsigned = signing && !signing.ok ? signing.images.filter((r) => !r.ok).map((r) => r.image) : [];

  // 4. Promote (default branch only; refuses by itself if anything failed; never unverified images).
  if (promoting && failedPush.length === 0 && unsigned.length > 0) {
    promotion = emptyPromotion(true, "refused", `signing or verification failed for ${unsigned.join(", ")}: no production tag moved`);
    promotion.failed = unsigned.map((image) => ({ image, error: signing?.images.find((r) => r.image === image)?.error ?? "not verified" }));
    log.error({ failed: unsigned }, "promotion refused: images not signed and verified");
  } else if (promoting) {
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
      ...(options.settleMs !== undefined ? { settleMs: options.settleMs } : {}),
      ...(options.verify ? { verify: options.verify } : {}),
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
      for (const c of promotion.conflicts) {
        const row = rows.get(c.image) as ImageReport;
        row.error ??= `promotion stopped: conflict: ${c.ref} holds ${c.found ?? "nothing"}, this run expected ${c.expected ?? "nothing"}`;
      }
    }
  }
  const ok = failedPush.length === 0 && unsigned.length === 0 && (promotion === null || promotion.promoted);
  const summary = ciSummary({
    images: rows.size,
    failedPush,
    unsigned,
    promotion,
    signing,
    tags,
    slug: refSlug(c.branch),
    movedBranchLatest: options.moveBranchLatest ?? true,
  });
  return finish(summary, ok, mode);
}

/** The one line a published run's report starts with: what was published, signed and promoted, or what failed. */
export function ciSummary(run: {
  images: number;
  failedPush: readonly string[];
  unsigned: readonly string[];
  promotion: PromotionResult | null;
  signing: SigningReport | null;
  tags: BranchTags;
  slug: string;
  movedBranchLatest: boolean;
}): string {
  const { images, failedPush, unsigned, promotion, signing, tags, slug } = run;
  if (failedPush.length > 0) {
    return `${failedPush.length} of ${images} images failed to publish (${failedPush.join(", ")})` + (promotion ? "; no production tag moved" : "");
  }
  if (unsigned.length > 0) {
    return (
      `all ${images} images published under ${slug}; ${unsigned.length} failed signing or verification (${unsigned.join(", ")})` +
      (promotion ? ": not promoted, no production tag moved" : "")
    );
  }
  if (promotion && !promotion.promoted) return `all ${images} images published under ${slug}; promotion failed: ${promotion.reason}`;
  let summary = `all ${images} images published as ${tags.commit}`;
  if (run.movedBranchLatest) summary += ` and ${tags.branchLatest}`;
  if (signing) summary += `; signed, attested and verified (${signing.mode})`;
  if (promotion) summary += `; promoted to ${tags.production}`;
  return summary;
}
