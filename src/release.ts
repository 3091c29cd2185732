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
import { formatRef, NotRetried, parseRef, type PlatformDigest, RegistryClient, repositoryOf } from "./registry.js";
import {
  imageRow,
  type ImageReport,
  type ProductionTag,
  type PromotionResult,
  type Report,
  type RunContext,
  type SigningReport,
  type SigningRow,
  type TagMove,
} from "./report.js";
import { cosignTags, type DigestTarget, type SignedDigest } from "./signing.js";
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
  /** For an image index: each platform's manifest digest, as the registry holds it. */
  platforms: PlatformDigest[];
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

/** Push every image once, check its digest, and point the branch -latest tag at it. */
export async function publish(options: PublishOptions): Promise<PublishedImage[]> {
  const log = options.log ?? silentLogger();
  const limit = pLimit(options.concurrency ?? 4);
  return Promise.all(
    options.images.map((image) =>
      limit(async (): Promise<PublishedImage> => {
        const started = Date.now();
        const repo = repositoryOf(options.registry, image);
        const commitRef = formatRef({ ...repo, tag: options.tags.commit });
        const row: PublishedImage = {
          image,
          ok: false,
          digest: null,
          mediaType: null,
          sizeBytes: null,
          platforms: [],
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
          row.platforms = RegistryClient.platformsOf(back);
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
  /** Checks run at once before any move (moves themselves go one at a time). */
  concurrency?: number;
  /**
   * After the last move and its read-back, wait this long and read every
   * production tag again (default 2000 ms): a concurrent writer's request
   * still in flight lands in between and is caught as a conflict.
   */
  settleMs?: number;
  /**
   * Checked for every image before any move (promote alone, after another
   * run published): its signature and both attestations on `repo@digest`;
   * resolves with why not, or null when they verify.
   */
  verify?: VerifyFn;
  log?: Logger;
}

/** Why `ref` (repo@digest) is not signed and attested as required, or null when it is. */
export type VerifyFn = (image: string, ref: string) => Promise<string | null>;

function emptyPromotion(attempted: boolean, outcome: PromotionResult["outcome"], reason: string): PromotionResult {
  return {
    attempted,
    promoted: false,
    outcome,
    reason,
    moved: [],
    unchanged: [],
    rolledBack: [],
    notRestored: [],
    failed: [],
    conflicts: [],
    tags: [],
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Rounds of a restore or a last read-back, each of whose requests the client
 * already retries with its policy (retries, backoff): bounded, so that a
 * registry that stays down ends the run in minutes.
 */
const ROUNDS = 3;

/** Another writer changed a production tag: never retried. */
class ConflictError extends NotRetried {
  constructor(
    readonly ref: string,
    readonly expected: string | null,
    readonly found: string | null,
  ) {
    super(`${ref} holds ${found ?? "nothing"}, this run expected ${expected ?? "nothing"}: another writer changed it`);
    this.name = "ConflictError";
  }
}

interface Step {
  image: string;
  /** This run's digest. */
  digest: string;
  ref: string;
  /** The production tag's digest read before any move; null when absent. */
  previous: string | null;
}

/**
 * Move the production tag of every image to this run's digest, or none of
 * them; the outcome is what the registry holds, read back.
 *
 * 1. Check everything first: each digest fetched by digest and hashed, each
 *    commit tag read back, each production tag's digest recorded.
 * 2. Move one tag at a time; before each move, read the tag and compare it
 *    with the digest recorded (another writer: conflict, stop). A move that
 *    fails in any way may have reached the registry: it counts as possibly
 *    moved from then on.
 * 3. After the last move read every production tag back: all on this run's
 *    digests, or a conflict.
 * 4. On any failure or conflict, restore every tag possibly moved (each
 *    restore judged by reading the tag, retried with the client's policy),
 *    then read every production tag back and report where each points now.
 */
export async function promote(options: PromoteOptions): Promise<PromotionResult> {
  const log = options.log ?? silentLogger();
  const { client } = options;
  if (!options.productionTag || options.branch !== options.defaultBranch) {
    return emptyPromotion(
      false,
      "not-attempted",
      `branch ${JSON.stringify(options.branch)} is not the default branch ${JSON.stringify(options.defaultBranch)}: production tags untouched`,
    );
  }
  const productionTag = options.productionTag;
  const result = emptyPromotion(true, "refused", "");
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

  // 1. Verify everything before touching anything; record the production digests.
  const limit = pLimit(options.concurrency ?? 4);
  const checks = await Promise.all(
    options.images.map((image) =>
      limit(async (): Promise<Step | { image: string; error: string }> => {
        const repo = repositoryOf(options.registry, image);
        const digest = byImage.get(image)?.digest as string;
        try {
          await client.getManifest({ ...repo, digest }); // hashes the bytes against the digest
          const commit = await client.headManifest({ ...repo, tag: options.commitTag });
          if (commit?.digest !== digest) {
            throw new Error(
              `${formatRef({ ...repo, tag: options.commitTag })} points at ${commit?.digest ?? "nothing"}, this run pushed ${digest}`,
            );
          }
          if (options.verify) {
            const why = await options.verify(image, formatRef({ ...repo, digest }));
            if (why) throw new Error(`${formatRef({ ...repo, digest })} is not signed and attested as required: ${why}`);
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
    // Nothing was touched: every production tag is where it was; read the ones the checks could not.
    result.tags = await Promise.all(
      options.images.map((image) =>
        limit(async (): Promise<ProductionTag> => {
          const checked = steps.find((s) => s.image === image);
          const ref = formatRef({ ...repositoryOf(options.registry, image), tag: productionTag });
          const wanted = byImage.get(image)?.digest as string;
          if (checked) return { image, ref, old: checked.previous, new: wanted, now: checked.previous, state: "old" };
          try {
            const now = await retried(client, ref, async () => (await client.headManifest(ref))?.digest ?? null);
            return { image, ref, old: now, new: wanted, now, state: "old" };
          } catch {
            return { image, ref, old: null, new: wanted, now: null, state: "unknown" };
          }
        }),
      ),
    );
    return result;
  }

  const read = async (s: Step): Promise<string | null> =>
    (await client.headManifest({ ...repositoryOf(options.registry, s.image), tag: productionTag }))?.digest ?? null;
  const conflict = (error: ConflictError, image: string) => {
    result.conflicts.push({ image, ref: error.ref, expected: error.expected, found: error.found });
    log.error({ ref: error.ref, expected: error.expected, found: error.found }, "conflict: another writer changed a production tag");
  };

  // 2. Move one tag at a time. Every write attempt is preceded by a read of the tag
  //    (the recorded digest, or this run's own after an attempt whose answer was
  //    lost); anything else is another writer.
  const touched: Step[] = [];
  let stopped = false;
  for (const s of steps) {
    const move: TagMove = { image: s.image, ref: s.ref, from: s.previous, to: s.digest };
    try {
      if (s.previous === s.digest) {
        const now = await read(s);
        if (now !== s.previous) throw new ConflictError(s.ref, s.previous, now);
        result.unchanged.push(move);
        continue;
      }
      await moveTag(options, s, productionTag, read, () => {
        if (!touched.includes(s)) touched.push(s); // from here on the outcome may be unknown
      });
      result.moved.push(move);
    } catch (error) {
      if (error instanceof ConflictError) conflict(error, s.image);
      else result.failed.push({ image: s.image, error: message(error) });
      stopped = true;
      break;
    }
  }

  // 3. After the last move: every production tag must hold this run's digest, now
  //    and once more after a pause (a concurrent writer's request in flight lands).
  for (const pause of [0, options.settleMs ?? 2000]) {
    if (stopped) break;
    if (pause > 0) await sleep(pause);
    for (const s of steps) {
      try {
        const now = await read(s);
        if (now !== s.digest) throw new ConflictError(s.ref, s.digest, now);
      } catch (error) {
        if (error instanceof ConflictError) conflict(error, s.image);
        else result.failed.push({ image: s.image, error: `could not read the production tag back: ${message(error)}` });
        stopped = true;
      }
    }
  }
  if (!stopped) {
    result.promoted = true;
    result.outcome = "promoted";
    result.tags = steps.map((s) => ({ image: s.image, ref: s.ref, old: s.previous, new: s.digest, now: s.digest, state: "new" as const }));
    result.reason =
      result.moved.length > 0
        ? `${result.moved.length} production tags moved, ${result.unchanged.length} already in place`
        : `all ${result.unchanged.length} production tags were already at this run's digests`;
    log.info({ moved: result.moved.length, unchanged: result.unchanged.length }, "promoted");
    return result;
  }

  // 4. Restore every tag possibly moved, then read every production tag back.
  log.error({ failed: result.failed, conflicts: result.conflicts }, "promotion stopped; restoring the production tags it may have moved");
  const moved = result.moved;
  result.moved = [];
  const whyNot = new Map<string, string>();
  for (const s of touched) {
    const why = await restore(options, s, productionTag, read, log);
    if (why) whyNot.set(s.image, why);
  }
  const finals = await Promise.all(
    steps.map((s) =>
      limit(async () => {
        try {
          return { s, now: await retried(client, s.ref, () => read(s)), readable: true };
        } catch {
          return { s, now: null, readable: false };
        }
      }),
    ),
  );
  const touchedImages = new Set(touched.map((s) => s.image));
  for (const { s, now, readable } of finals) {
    const state: ProductionTag["state"] = !readable
      ? "unknown"
      : now === s.previous
        ? "old"
        : now === s.digest
          ? "new"
          : "other";
    result.tags.push({ image: s.image, ref: s.ref, old: s.previous, new: s.digest, now: readable ? now : null, state });
    const back: TagMove = { image: s.image, ref: s.ref, from: s.digest, to: s.previous };
    if (state === "old") {
      if (touchedImages.has(s.image)) result.rolledBack.push(back);
      continue;
    }
    if (state === "other") {
      // Another writer's digest: not this run's to restore; reported as a conflict.
      if (!result.conflicts.some((c) => c.image === s.image)) {
        result.conflicts.push({ image: s.image, ref: s.ref, expected: s.previous, found: now });
      }
      continue;
    }
    // Still on this run's digest, or unknown, on a tag this run may have moved.
    result.notRestored.push({
      image: s.image,
      ref: s.ref,
      from: s.previous,
      to: state === "unknown" ? null : now,
      why:
        state === "unknown"
          ? `its digest could not be read back after retries${whyNot.has(s.image) ? ` (${whyNot.get(s.image)})` : ""}: check it by hand`
          : (whyNot.get(s.image) ?? "still on this run's digest after the rollback"),
    });
  }
  if (moved.length > 0) log.info({ rolledBack: result.rolledBack.length, notRestored: result.notRestored.length }, "rollback done");

  const failedNames = result.failed.map((f) => f.image);
  const cause =
    result.conflicts.length > 0
      ? `conflict: another writer changed ${result.conflicts.map((c) => c.ref).join(", ")} during the promotion`
      : `moving the production tag failed for ${failedNames.join(", ")}`;
  const old = result.tags.filter((t) => t.state === "old").length;
  result.outcome = result.notRestored.length > 0 ? "not-restored" : result.conflicts.length > 0 ? "conflict" : "rolled-back";
  result.reason =
    `${cause}; ${result.rolledBack.length} tags rolled back, ${old} of ${steps.length} production tags on their old digests` +
    (result.notRestored.length > 0 ? `, ${result.notRestored.length} could NOT be restored` : "");
  return result;
}

/** A read retried on any error with the client's policy, `ROUNDS` attempts (its failure would leave an outcome unknown). */
function retried<T>(client: RegistryClient, ref: string, fn: () => Promise<T>): Promise<T> {
  return client.retry("read production tag", parseRef(ref), fn, { retries: ROUNDS - 1, retryAny: true });
}

/**
 * Point one production tag at this run's digest: the manifest fetched by
 * digest once, then write attempts with the client's retry policy, each
 * preceded by a read of the tag (it must hold the recorded digest, or this
 * run's own after an attempt whose answer was lost) and followed by a read
 * back. `touching` is called before the first write.
 */
async function moveTag(
  options: PromoteOptions,
  s: Step,
  productionTag: string,
  read: (s: Step) => Promise<string | null>,
  touching: () => void,
): Promise<void> {
  const { client } = options;
  const repo = repositoryOf(options.registry, s.image);
  const target = { ...repo, tag: productionTag };
  const source = await client.getManifest({ ...repo, digest: s.digest });
  let written = false;
  await client.retry("promote", target, async () => {
    const now = await read(s);
    if (now !== s.previous && !(written && now === s.digest)) throw new ConflictError(s.ref, s.previous, now);
    touching();
    written = true;
    await client.putManifest(target, source.bytes, source.mediaType, { once: true });
  });
  const back = await client.getManifest(target);
  if (back.digest !== s.digest) throw new ConflictError(s.ref, s.digest, back.digest);
}

/**
 * Put one production tag back on its old digest, judged by reading the tag,
 * never by a write's answer (a write may be applied with its answer lost).
 * `ROUNDS` attempts with the client's backoff. Returns why it is not back, or
 * null when it was read back on its old digest. Another writer's digest is
 * left alone.
 */
async function restore(
  options: PromoteOptions,
  s: Step,
  productionTag: string,
  read: (s: Step) => Promise<string | null>,
  log: Logger,
): Promise<string | null> {
  const { client } = options;
  const repo = repositoryOf(options.registry, s.image);
  let why = "rollback not attempted";
  let round = 0;
  const attempt = async (): Promise<string | null> => {
    round++;
    let now: string | null | undefined;
    try {
      now = await read(s);
    } catch (error) {
      now = undefined; // unknown: restore anyway, this run may have moved it
      why = `read before restoring failed: ${message(error)}`;
    }
    if (now === s.previous) return null;
    if (now !== undefined && now !== s.digest) return "another writer's digest is on it now: this run left it alone";
    try {
      if (s.previous) {
        await client.copyManifest({ ...repo, digest: s.previous }, productionTag);
        return null;
      }
      if ((await client.deleteTag({ ...repo, tag: productionTag })) === "unsupported") {
        return "the tag did not exist before and this registry cannot delete a tag alone (deleting by digest would remove the commit tags too)";
      }
      return null;
    } catch (error) {
      why = `rollback failed: ${message(error)}`;
      log.warn({ ref: s.ref, attempt: round, err: why }, "restoring a production tag failed; reading it again");
      throw error;
    }
  };
  try {
    return await client.retry("restore production tag", { ...repo, tag: productionTag }, attempt, {
      retries: ROUNDS - 1,
      retryAny: true,
    });
  } catch {
    return why;
  }
}

/** Builds and smoke-tests one image; throws on failure. */
export type CheckFn = (image: string) => Promise<void>;

/** What one published image is signed as: its name, and signing.ts's target (repository, digest, an index's platform digests). */
export type SigningTarget = DigestTarget & { image: string };

/**
 * Signing in a run: how (for the report) and the function that signs,
 * attests and verifies one published image, each of its digests (never
 * throws: a digest that failed carries its error).
 */
export interface Signing {
  describe: Omit<SigningReport, "ok" | "skipped" | "images">;
  sign: (target: SigningTarget) => Promise<SignedDigest[]>;
}

/** Bytes of cosign's signature and attestation manifests for these digests (null when unreadable). */
async function cosignBytes(client: RegistryClient, repository: string, digests: readonly string[]): Promise<{ signature: number | null; attestation: number | null }> {
  const sum = async (kind: "signature" | "attestation") => {
    let total = 0;
    for (const digest of digests) {
      const ref = `${repository}:${cosignTags(digest)[kind]}`;
      if (!(await client.headManifest(ref))) continue;
      total += await client.imageSize(await client.getManifest(ref));
    }
    return total;
  };
  try {
    return { signature: await sum("signature"), attestation: await sum("attestation") };
  } catch {
    return { signature: null, attestation: null };
  }
}

/**
 * Sign, attest and verify every published image (two at a time). All
 * must verify for the run to promote.
 */
export async function signPublished(
  signing: Signing,
  registry: string,
  published: readonly PublishedImage[],
  client: RegistryClient,
  log: Logger,
): Promise<SigningReport> {
  const limit = pLimit(2);
  const images = await Promise.all(
    published.map((p) =>
      limit(async (): Promise<SigningRow> => {
        const started = Date.now();
        const repo = repositoryOf(registry, p.image);
        const repository = formatRef(repo);
        const row: SigningRow = { image: p.image, ok: false, digests: [], signatureBytes: null, attestationBytes: null, ms: 0, error: null };
        try {
          if (!p.digest) throw new Error("not published");
          row.digests = await signing.sign({ image: p.image, repository, digest: p.digest, platforms: p.platforms });
          const failed = row.digests.filter((d) => !d.verified);
          if (row.digests.length === 0) throw new Error("nothing was signed");
          if (failed.length > 0) throw new Error(failed.map((d) => `${d.role} ${d.digest}: ${d.error ?? "not verified"}`).join("; "));
          row.ok = true;
          log.info({ image: p.image, digests: row.digests.map((d) => d.digest) }, "signed, attested and verified");
        } catch (error) {
          row.error = message(error);
          log.error({ image: p.image, err: row.error }, "signing failed");
        }
        const sizes = await cosignBytes(client, repository, row.digests.filter((d) => d.signed).map((d) => d.digest));
        row.signatureBytes = sizes.signature;
        row.attestationBytes = sizes.attestation;
        row.ms = Date.now() - started;
        return row;
      }),
    ),
  );
  return { ...signing.describe, ok: images.every((r) => r.ok), skipped: null, images };
}

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
  const slug = refSlug(c.branch);
  let summary: string;
  if (failedPush.length > 0) {
    summary = `${failedPush.length} of ${rows.size} images failed to publish (${failedPush.join(", ")})`;
    summary += promotion ? "; no production tag moved" : "";
  } else if (unsigned.length > 0) {
    summary = `all ${rows.size} images published under ${slug}; ${unsigned.length} failed signing or verification (${unsigned.join(", ")})`;
    summary += promotion ? ": not promoted, no production tag moved" : "";
  } else if (promotion && !promotion.promoted) {
    summary = `all ${rows.size} images published under ${slug}; promotion failed: ${promotion.reason}`;
  } else {
    summary = `all ${rows.size} images published as ${tags.commit}`;
    if (options.moveBranchLatest ?? true) summary += ` and ${tags.branchLatest}`;
    if (signing) summary += `; signed, attested and verified (${signing.mode})`;
    if (promotion) summary += `; promoted to ${tags.production}`;
  }
  return finish(summary, ok, mode);
}
