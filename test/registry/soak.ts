/**
 * The promotion soak: many promotions of 8 images against the real registry
 * behind the fault proxy, at seeded random fault rates, each compared with
 * what the registry holds afterwards (read directly, not through the proxy).
 * Used by the short soak in the default tests and by `npm run bench:promotion`.
 */
import { silentLogger, type Logger } from "../../src/core/log.js";
import { RegistryClient } from "../../src/registry/client.js";
import { promote } from "../../src/release/promote.js";
import { publish, type PublishedImage } from "../../src/release/publish.js";
import type { PromotionResult } from "../../src/release/report.js";
import { branchTags } from "../../src/core/tags.js";
import { pushSynthetic, startAuthRegistry } from "./harness.js";
import { type FaultAction, type FaultProxy, startFaultProxy } from "./fault-proxy.js";

export const SOAK_IMAGES = ["slurmctld", "slurmd", "slurmdbd", "slurmrestd", "sackd", "login", "slurmd-pyxis", "login-pyxis"];
const USER = { username: "soak", password: "soak-password-not-secret" };
const PROD = "25.11-ubuntu24.04-latest";

/** mulberry32: a small seeded PRNG, so a soak can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One random fault, of every kind the proxy can inject. */
function randomFault(random: () => number): FaultAction {
  const kinds: FaultAction[] = [
    { kind: "status", status: 500 },
    { kind: "status", status: 502 },
    { kind: "status", status: 503 },
    { kind: "status", status: 429, headers: { "retry-after": "0" } },
    { kind: "reset" },
    { kind: "reset-after" },
    { kind: "reset-after" },
    { kind: "delay", ms: 5 + Math.floor(random() * 40) },
  ];
  return kinds[Math.floor(random() * kinds.length)] as FaultAction;
}

export interface SoakOptions {
  promotions: number;
  seed: number;
  /** Fault rates are drawn from these, in turn (default 0.05 to 0.6). */
  rates?: readonly number[];
  /** Every n-th promotion is two promotions of different commits at once (default 10; 0: never). */
  concurrentEvery?: number;
  /** Commits published beforehand, promoted in random order (default 6). */
  commits?: number;
  log?: Logger;
  /** Called after each promotion with a one-line summary (progress). */
  progress?: (line: string) => void;
}

export interface NotRestoredCase {
  promotion: number;
  rate: number;
  image: string;
  state: string;
  why: string;
}

export interface SoakCounts {
  promotions: number;
  seed: number;
  /** Reported promoted, every production tag read back on the new digest. */
  success: number;
  /** Not promoted, every production tag read back on its old digest. */
  cleanFailure: number;
  /** Not promoted, production neither all old nor all new afterwards. */
  mixed: number;
  /** MIXED with a tag off its old digest that the report does not list under NOT restored. */
  mixedUnreported: number;
  /** A report's claim (promoted, per-tag state, rolled back) that the registry contradicts. */
  mismatches: number;
  /** Tags the report could not read back (state unknown), not a mismatch. */
  unknownTags: number;
  /** Runs that stopped on a conflict (concurrent pairs). */
  conflicts: number;
  concurrentPairs: number;
  /** Concurrent pairs where both reported success: must be 0. */
  bothSucceeded: number;
  notRestored: NotRestoredCase[];
  mismatchCases: string[];
  /** Single promotions by fault rate: [success, clean failure, MIXED]. */
  byRate: Record<string, [number, number, number]>;
  requests: number;
  faultsInjected: number;
  seconds: number;
}

/** Runs the soak on a registry and proxy of its own, and stops them. */
export async function runSoak(options: SoakOptions): Promise<SoakCounts> {
  const started = Date.now();
  const log = options.log ?? silentLogger();
  const random = prng(options.seed);
  const rates = options.rates ?? [0.05, 0.1, 0.2, 0.3, 0.45, 0.6];
  const { registry } = await startAuthRegistry("htpasswd", [USER]);
  let proxy: FaultProxy | undefined;
  const counts: SoakCounts = {
    promotions: 0,
    seed: options.seed,
    success: 0,
    cleanFailure: 0,
    mixed: 0,
    mixedUnreported: 0,
    mismatches: 0,
    unknownTags: 0,
    conflicts: 0,
    concurrentPairs: 0,
    bothSucceeded: 0,
    notRestored: [],
    mismatchCases: [],
    byRate: {},
    requests: 0,
    faultsInjected: 0,
    seconds: 0,
  };
  try {
    proxy = await startFaultProxy(registry.host);
    const path = `${proxy.host}/soak/project`;
    const client = () =>
      new RegistryClient({ ...USER, plainHttp: true, logger: log, minBackoffMs: 5, maxBackoffMs: 40, requestTimeoutMs: 10_000 });
    const direct = new RegistryClient({ ...USER, plainHttp: true });
    const directRef = (image: string) => `${registry.host}/soak/project/${image}:${PROD}`;
    const readProduction = () => Promise.all(SOAK_IMAGES.map(async (image) => (await direct.headManifest(directRef(image)))?.digest ?? null));

    // Publish the commits (no faults), and promote the first one so that production exists.
    const shas = Array.from({ length: options.commits ?? 6 }, (_, i) => `${(i + 1).toString(16).repeat(8)}${"0".repeat(32)}`);
    const published = new Map<string, PublishedImage[]>();
    const setup = client();
    for (const sha of shas) {
      const tags = branchTags({ line: "25.11", flavor: "ubuntu24.04", branch: "main", sha, defaultBranch: "main" });
      const rows = await publish({
        registry: path,
        images: SOAK_IMAGES,
        tags,
        push: (image, ref) => pushSynthetic(setup, ref, `${image}-${sha}`),
        client: setup,
        log,
      });
      if (rows.some((r) => !r.ok)) throw new Error(`soak setup: publishing ${sha} failed: ${rows.map((r) => r.error).join("; ")}`);
      published.set(sha, rows);
    }
    const promoteSha = (sha: string, c = client()) =>
      promote({
        registry: path,
        images: SOAK_IMAGES,
        published: published.get(sha) as PublishedImage[],
        productionTag: PROD,
        commitTag: branchTags({ line: "25.11", flavor: "ubuntu24.04", branch: "main", sha, defaultBranch: "main" }).commit,
        branch: "main",
        defaultBranch: "main",
        client: c,
        settleMs: 100,
        log,
      });
    const first = await promoteSha(shas[0] as string);
    if (!first.promoted) throw new Error(`soak setup: first promotion failed: ${first.reason}`);

    const digestsOf = (sha: string) => (published.get(sha) as PublishedImage[]).map((p) => p.digest);
    const pick = (not: string[]) => {
      const choices = shas.filter((s) => !not.includes(s));
      return choices[Math.floor(random() * choices.length)] as string;
    };
    let current = shas[0] as string;

    /** Compares one report with the registry before and after it. */
    const judge = (n: number, rate: number, sha: string, report: PromotionResult, before: (string | null)[], after: (string | null)[]) => {
      const wanted = digestsOf(sha);
      const allOld = after.every((d, i) => d === before[i]);
      const allNew = after.every((d, i) => d === wanted[i]);
      const mismatch = (what: string) => {
        counts.mismatches++;
        counts.mismatchCases.push(`promotion ${n} (rate ${rate}): ${what}`);
      };
      const row = (counts.byRate[`${Math.round(rate * 100)} %`] ??= [0, 0, 0]);
      if (report.promoted) {
        if (allNew) counts.success++, row[0]++;
        else mismatch("reported promoted, production is not all on the new digests");
      } else if (allOld) counts.cleanFailure++, row[1]++;
      else if (!allNew) counts.mixed++, row[2]++;
      if (report.outcome === "conflict") counts.conflicts++;
      let unreported = false;
      SOAK_IMAGES.forEach((image, i) => {
        const tag = report.tags.find((t) => t.image === image);
        if (!tag) return mismatch(`${image}: no production tag state in the report`);
        const actual = after[i] ?? null;
        const ok =
          tag.state === "unknown" ||
          (tag.state === "old" && actual === before[i]) ||
          (tag.state === "new" && actual === wanted[i]) ||
          (tag.state === "other" && actual !== before[i] && actual !== wanted[i]);
        if (tag.state === "unknown") counts.unknownTags++;
        if (!ok) mismatch(`${image}: report says ${tag.state} (${tag.now}), registry holds ${actual}`);
        if (tag.state !== "unknown" && tag.now !== actual) mismatch(`${image}: report says now ${tag.now}, registry holds ${actual}`);
        if (report.rolledBack.some((m) => m.image === image) && actual !== before[i]) mismatch(`${image}: reported rolled back, not on its old digest`);
        const off = actual !== before[i];
        const listed = report.notRestored.some((m) => m.image === image);
        if (!report.promoted && off && !listed && !allNew) unreported = true;
        if (!report.promoted && off && !listed && tag.state !== "other") mismatch(`${image}: off its old digest and not listed as NOT restored`);
      });
      if (unreported) counts.mixedUnreported++;
      for (const m of report.notRestored) {
        counts.notRestored.push({ promotion: n, rate, image: m.image, state: report.tags.find((t) => t.image === m.image)?.state ?? "?", why: m.why });
      }
    };

    const every = options.concurrentEvery ?? 10;
    for (let n = 1; n <= options.promotions; n++) {
      const rate = rates[(n - 1) % rates.length] as number;
      proxy.chaos = ({ path: p }) => {
        if (!p.startsWith("/v2/soak/")) return undefined;
        if (random() >= rate) return undefined;
        counts.faultsInjected++;
        return randomFault(random);
      };
      const before = await readProduction();
      if (every > 0 && n % every === 0) {
        // Two promotions of different commits at once.
        const a = pick([current]);
        const b = pick([current, a]);
        const [ra, rb] = await Promise.all([promoteSha(a), promoteSha(b)]);
        proxy.chaos = undefined;
        const after = await readProduction();
        counts.concurrentPairs++;
        counts.promotions += 2;
        if (ra.promoted && rb.promoted) counts.bothSucceeded++;
        for (const [sha, r] of [[a, ra], [b, rb]] as const) {
          if (r.outcome === "conflict") counts.conflicts++;
          if (r.promoted && !after.every((d, i) => d === digestsOf(sha)[i])) {
            counts.mismatches++;
            counts.mismatchCases.push(`concurrent pair at ${n}: ${sha.slice(0, 8)} reported promoted, production is not all its digests`);
          }
        }
        if (ra.promoted) current = a;
        if (rb.promoted) current = b;
        options.progress?.(`#${n} concurrent pair at rate ${rate}: ${ra.outcome} / ${rb.outcome}`);
        // Leave production on one commit for the next single run: promote a third commit with no faults.
        const next = pick([current]);
        if ((await promoteSha(next)).promoted) current = next;
        continue;
      }
      const sha = pick([current]);
      const report = await promoteSha(sha);
      proxy.chaos = undefined;
      const after = await readProduction();
      counts.promotions++;
      judge(n, rate, sha, report, before, after);
      if (report.promoted) current = sha;
      options.progress?.(`#${n} rate ${rate}: ${report.outcome}`);
    }
    counts.requests = proxy.requests.length;
  } finally {
    await proxy?.stop();
    await registry.stop();
  }
  counts.seconds = Math.round((Date.now() - started) / 100) / 10;
  return counts;
}

/** The counts as the benchmark prints them. */
export function formatSoak(c: SoakCounts): string {
  const lines = [
    `promotion soak: ${c.promotions} promotions of ${SOAK_IMAGES.length} images, seed ${c.seed}, ${c.seconds} s, ${c.requests} requests, ${c.faultsInjected} faults injected`,
    `  success:                 ${c.success}`,
    `  clean failure:           ${c.cleanFailure}`,
    `  MIXED (reported):        ${c.mixed - c.mixedUnreported}`,
    `  MIXED unreported:        ${c.mixedUnreported}`,
    `  report/registry mismatches: ${c.mismatches}`,
    `  tags read back unknown:  ${c.unknownTags}`,
    `  conflicts:               ${c.conflicts}`,
    `  concurrent pairs:        ${c.concurrentPairs} (both reported success: ${c.bothSucceeded})`,
    `  NOT restored cases:      ${c.notRestored.length}`,
    `  by fault rate (single promotions: success / clean failure / MIXED):`,
    ...Object.entries(c.byRate).map(([rate, [ok, clean, mixed]]) => `    ${rate.padStart(5)}: ${ok} / ${clean} / ${mixed}`),
    ...c.notRestored.map((x) => `    NOT restored: promotion ${x.promotion} at rate ${x.rate}: ${x.image} (${x.state}): ${x.why}`),
    ...c.mismatchCases.map((x) => `    MISMATCH: ${x}`),
  ];
  return lines.join("\n");
}
