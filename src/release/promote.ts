/**
 * Promote: move the production tag of every image to this run's digest, or
 * none of them; the outcome is what the registry holds, read back. Default
 * branch only. Four named phases, each returning its part of the result:
 *
 * 1. check: everything first: each digest fetched by digest and hashed, each
 *    commit tag read back, (promote alone) each signature verified, each
 *    production tag's digest recorded. Any failure: nothing is touched.
 * 2. move: one tag at a time; before each move, read the tag and compare it
 *    with the digest recorded (another writer: conflict, stop). A move that
 *    fails in any way may have reached the registry: it counts as possibly
 *    moved from then on.
 * 3. confirm: after the last move read every production tag back, now and
 *    once more after a pause: all on this run's digests, or a conflict.
 * 4. roll back: on any failure or conflict, restore every tag possibly moved
 *    (each restore judged by reading the tag, retried with the client's
 *    policy), then read every production tag back and report where each
 *    points now.
 */
import pLimit, { type LimitFunction } from "p-limit";
import { messageOf as message } from "../core/errors.js";
import { silentLogger, type Logger } from "../core/log.js";
import type { RegistryClient } from "../registry/client.js";
import { NotRetried } from "../registry/errors.js";
import { formatRef, parseRef, repositoryOf } from "../registry/reference.js";
import type { PublishedImage } from "./publish.js";
import type { ProductionTag, PromotionResult, TagMove } from "./report.js";

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

export function emptyPromotion(attempted: boolean, outcome: PromotionResult["outcome"], reason: string): PromotionResult {
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

type Failure = PromotionResult["failed"][number];
type Conflict = PromotionResult["conflicts"][number];

/** What every phase works with. */
interface Run {
  options: PromoteOptions;
  client: RegistryClient;
  productionTag: string;
  log: Logger;
  limit: LimitFunction;
  /** This run's digest of each image. */
  digestOf: (image: string) => string;
  /** The production tag's digest now. */
  read: (s: Step) => Promise<string | null>;
}

/** What stopped a move or a read-back: another writer (a conflict, logged) or a failure, `why` before its message. */
function recordStop(run: Run, out: { failed: Failure[]; conflicts: Conflict[] }, image: string, error: unknown, why = ""): void {
  if (!(error instanceof ConflictError)) {
    out.failed.push({ image, error: `${why}${message(error)}` });
    return;
  }
  out.conflicts.push({ image, ref: error.ref, expected: error.expected, found: error.found });
  run.log.error({ ref: error.ref, expected: error.expected, found: error.found }, "conflict: another writer changed a production tag");
}

/** Move the production tag of every image to this run's digest, or none of them: the four phases above. */
export async function promote(options: PromoteOptions): Promise<PromotionResult> {
  const log = options.log ?? silentLogger();
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
  const { client } = options;
  const run: Run = {
    options,
    client,
    productionTag,
    log,
    limit: pLimit(options.concurrency ?? 4),
    digestOf: (image) => byImage.get(image)?.digest as string,
    read: async (s) => (await client.headManifest({ ...repositoryOf(options.registry, s.image), tag: productionTag }))?.digest ?? null,
  };

  const checked = await check(run);
  if (checked.failed.length > 0) {
    result.failed = checked.failed;
    result.tags = checked.tags;
    result.reason = `verification failed for ${result.failed.map((f) => f.image).join(", ")}: no production tag moved`;
    return result;
  }
  const { steps } = checked;
  const moved = await move(run, steps);
  result.moved = moved.moved;
  result.unchanged = moved.unchanged;
  result.failed = moved.failed;
  result.conflicts = moved.conflicts;
  if (!moved.stopped) {
    const confirmed = await confirm(run, steps);
    result.failed.push(...confirmed.failed);
    result.conflicts.push(...confirmed.conflicts);
    if (confirmed.failed.length === 0 && confirmed.conflicts.length === 0) {
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
  }

  log.error({ failed: result.failed, conflicts: result.conflicts }, "promotion stopped; restoring the production tags it may have moved");
  const back = await rollBack(run, steps, moved.touched, result.conflicts);
  const hadMoved = result.moved.length > 0;
  result.moved = [];
  result.tags = back.tags;
  result.rolledBack = back.rolledBack;
  result.notRestored = back.notRestored;
  result.conflicts.push(...back.conflicts);
  if (hadMoved) log.info({ rolledBack: result.rolledBack.length, notRestored: result.notRestored.length }, "rollback done");
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

/**
 * Phase 1, check: every image verified before anything is touched, its
 * production tag's digest recorded. On a failure, `tags` says where every
 * production tag is (nothing was moved).
 */
async function check(run: Run): Promise<{ steps: Step[]; failed: Failure[]; tags: ProductionTag[] }> {
  const { options, client, productionTag, limit } = run;
  const checks = await Promise.all(
    options.images.map((image) =>
      limit(async (): Promise<Step | Failure> => {
        const repo = repositoryOf(options.registry, image);
        const digest = run.digestOf(image);
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
  const failed: Failure[] = [];
  for (const c of checks) {
    if ("error" in c) failed.push(c);
    else steps.push(c);
  }
  if (failed.length === 0) return { steps, failed, tags: [] };
  run.log.error({ failed }, "promotion refused");
  // Nothing was touched: every production tag is where it was; read the ones the checks could not.
  const tags = await Promise.all(
    options.images.map((image) =>
      limit(async (): Promise<ProductionTag> => {
        const checkedStep = steps.find((s) => s.image === image);
        const ref = formatRef({ ...repositoryOf(options.registry, image), tag: productionTag });
        const wanted = run.digestOf(image);
        if (checkedStep) return { image, ref, old: checkedStep.previous, new: wanted, now: checkedStep.previous, state: "old" };
        try {
          const now = await retried(client, ref, async () => (await client.headManifest(ref))?.digest ?? null);
          return { image, ref, old: now, new: wanted, now, state: "old" };
        } catch {
          return { image, ref, old: null, new: wanted, now: null, state: "unknown" };
        }
      }),
    ),
  );
  return { steps, failed, tags };
}

/**
 * Phase 2, move: one tag at a time. Every write attempt is preceded by a read
 * of the tag (the recorded digest, or this run's own after an attempt whose
 * answer was lost); anything else is another writer. `touched`: the steps
 * whose tag this run may have written.
 */
async function move(
  run: Run,
  steps: readonly Step[],
): Promise<{ moved: TagMove[]; unchanged: TagMove[]; touched: Step[]; failed: Failure[]; conflicts: Conflict[]; stopped: boolean }> {
  const out = { moved: [] as TagMove[], unchanged: [] as TagMove[], touched: [] as Step[], failed: [] as Failure[], conflicts: [] as Conflict[], stopped: false };
  for (const s of steps) {
    const tagMove: TagMove = { image: s.image, ref: s.ref, from: s.previous, to: s.digest };
    try {
      if (s.previous === s.digest) {
        const now = await run.read(s);
        if (now !== s.previous) throw new ConflictError(s.ref, s.previous, now);
        out.unchanged.push(tagMove);
        continue;
      }
      await moveTag(run, s, () => {
        if (!out.touched.includes(s)) out.touched.push(s); // from here on the outcome may be unknown
      });
      out.moved.push(tagMove);
    } catch (error) {
      recordStop(run, out, s.image, error);
      out.stopped = true;
      break;
    }
  }
  return out;
}

/**
 * Phase 3, confirm: every production tag must hold this run's digest, now
 * and once more after a pause (a concurrent writer's request in flight lands).
 */
async function confirm(run: Run, steps: readonly Step[]): Promise<{ failed: Failure[]; conflicts: Conflict[] }> {
  const out = { failed: [] as Failure[], conflicts: [] as Conflict[] };
  for (const pause of [0, run.options.settleMs ?? 2000]) {
    if (out.failed.length > 0 || out.conflicts.length > 0) break;
    if (pause > 0) await sleep(pause);
    for (const s of steps) {
      try {
        const now = await run.read(s);
        if (now !== s.digest) throw new ConflictError(s.ref, s.digest, now);
      } catch (error) {
        recordStop(run, out, s.image, error, "could not read the production tag back: ");
      }
    }
  }
  return out;
}

/**
 * Phase 4, roll back: restore every tag possibly moved, then read every
 * production tag back and say where each points: on its old digest (rolled
 * back), on another writer's (a conflict, left alone), or not restored.
 * `known`: the conflicts already reported.
 */
async function rollBack(
  run: Run,
  steps: readonly Step[],
  touched: readonly Step[],
  known: readonly Conflict[],
): Promise<{ tags: ProductionTag[]; rolledBack: TagMove[]; notRestored: PromotionResult["notRestored"]; conflicts: Conflict[] }> {
  const { client, limit } = run;
  const out = { tags: [] as ProductionTag[], rolledBack: [] as TagMove[], notRestored: [] as PromotionResult["notRestored"], conflicts: [] as Conflict[] };
  const whyNot = new Map<string, string>();
  for (const s of touched) {
    const why = await restore(run, s);
    if (why) whyNot.set(s.image, why);
  }
  const finals = await Promise.all(
    steps.map((s) =>
      limit(async () => {
        try {
          return { s, now: await retried(client, s.ref, () => run.read(s)), readable: true };
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
    out.tags.push({ image: s.image, ref: s.ref, old: s.previous, new: s.digest, now: readable ? now : null, state });
    const back: TagMove = { image: s.image, ref: s.ref, from: s.digest, to: s.previous };
    if (state === "old") {
      if (touchedImages.has(s.image)) out.rolledBack.push(back);
      continue;
    }
    if (state === "other") {
      // Another writer's digest: not this run's to restore; reported as a conflict.
      if (![...known, ...out.conflicts].some((c) => c.image === s.image)) {
        out.conflicts.push({ image: s.image, ref: s.ref, expected: s.previous, found: now });
      }
      continue;
    }
    // Still on this run's digest, or unknown, on a tag this run may have moved.
    out.notRestored.push({
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
  return out;
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
async function moveTag(run: Run, s: Step, touching: () => void): Promise<void> {
  const { client, options, productionTag, read } = run;
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
async function restore(run: Run, s: Step): Promise<string | null> {
  const { client, options, productionTag, read, log } = run;
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

