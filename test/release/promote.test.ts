/**
 * Promotion's outcome is what the registry holds: deterministic faults that
 * lose the registry's answer after it applied a write, or every read-back,
 * another writer changing a production tag mid-run, two promotions at once,
 * and a short seeded soak. Real docker-registry behind the fault proxy; the
 * tests look at the result directly, not through the proxy.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegistryClient } from "../../src/registry/client.js";
import { promote } from "../../src/release/promote.js";
import { publish, type PublishedImage } from "../../src/release/publish.js";
import { renderMarkdown, type PromotionResult, type Report } from "../../src/release/report.js";
import { branchTags } from "../../src/core/tags.js";
import { pushSynthetic, type RunningRegistry, startAuthRegistry } from "../registry/harness.js";
import { type Fault, type FaultProxy, startFaultProxy } from "../registry/fault-proxy.js";
import { formatSoak, runSoak } from "../registry/soak.js";

const USER = { username: "promoter", password: "promoter-password-not-secret" };
const IMAGES = ["slurmctld", "slurmd", "login"];
const SHA = {
  A: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
  B: "b2c3d4e5f60718293a4b5c6d7e8f901234567890",
  C: "c3d4e5f60718293a4b5c6d7e8f90123456789012",
};
const PROD = "25.11-ubuntu24.04-latest";

describe("promotion under faults that hide what the registry did", () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let project = 0;

  beforeAll(async () => {
    ({ registry } = await startAuthRegistry("htpasswd", [USER]));
    proxy = await startFaultProxy(registry.host);
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  const client = () => new RegistryClient({ ...USER, plainHttp: true, minBackoffMs: 10, maxBackoffMs: 50 });
  const observer = () => new RegistryClient({ ...USER, plainHttp: true });
  const commitTag = (sha: string) => branchTags({ line: "25.11", flavor: "ubuntu24.04", branch: "main", sha, defaultBranch: "main" }).commit;

  /** A project with commits A, B and C published (no faults), and optionally A promoted. */
  async function project3(promoteA = true) {
    const path = `${proxy.host}/group/promo${++project}`;
    const repo = new URL(`http://${path}`).pathname;
    const c = client();
    const published: Record<string, PublishedImage[]> = {};
    for (const [name, sha] of Object.entries(SHA)) {
      published[name] = await publish({
        registry: path,
        images: IMAGES,
        tags: branchTags({ line: "25.11", flavor: "ubuntu24.04", branch: "main", sha, defaultBranch: "main" }),
        push: (image, ref) => pushSynthetic(c, ref, `${image}-${sha}`),
        client: c,
      });
      expect(published[name]!.every((p) => p.ok)).toBe(true);
    }
    const run = (name: keyof typeof SHA, withClient = client()) =>
      promote({
        registry: path,
        images: IMAGES,
        published: published[name]!,
        productionTag: PROD,
        commitTag: commitTag(SHA[name]),
        branch: "main",
        defaultBranch: "main",
        client: withClient,
        settleMs: 200,
      });
    if (promoteA) expect((await run("A")).promoted).toBe(true);
    const digests = (name: keyof typeof SHA) => published[name]!.map((p) => p.digest);
    const production = () =>
      Promise.all(IMAGES.map(async (image) => (await observer().headManifest(`${registry.host}${repo}/${image}:${PROD}`))?.digest ?? null));
    const tagPath = (image: string) => new RegExp(`^/v2${repo}/${image}/manifests/${PROD}$`);
    return { path, repo, run, digests, production, tagPath };
  }

  async function withFaults<T>(faults: Fault[], fn: () => Promise<T>): Promise<T> {
    proxy.faults.push(...faults);
    try {
      return await fn();
    } finally {
      proxy.faults.length = 0;
      proxy.chaos = undefined;
    }
  }

  const states = (p: PromotionResult) => p.tags.map((t) => [t.image, t.state, t.now]);

  it("every PUT of one production tag applied but its answer lost: all tags end on their old digests, reported exactly", async () => {
    const t = await project3();
    const before = await t.production();
    expect(before).toEqual(t.digests("A"));
    const mark = proxy.requests.length;
    const p = await withFaults([{ method: "PUT", path: t.tagPath("slurmd"), action: { kind: "reset-after" } }], () => t.run("B"));
    expect(await t.production()).toEqual(before);
    // The registry did apply those PUTs (201), the client never heard it.
    const lost = proxy.requests.slice(mark).filter((r) => r.outcome === "reset-after");
    expect(lost.length).toBeGreaterThanOrEqual(5);
    expect(lost.every((r) => r.status === 201)).toBe(true);
    expect(p.promoted).toBe(false);
    expect(p.outcome).toBe("rolled-back");
    expect(p.failed.map((f) => f.image)).toEqual(["slurmd"]);
    expect(p.failed[0]?.error).toMatch(/ECONNRESET|UND_ERR_SOCKET|socket/i);
    // slurmd counts as possibly moved: it was on the new digest, and is restored.
    expect(p.rolledBack.map((m) => m.image)).toEqual(["slurmctld", "slurmd"]);
    expect(p.notRestored).toEqual([]);
    expect(p.conflicts).toEqual([]);
    expect(states(p)).toEqual(IMAGES.map((image, i) => [image, "old", before[i]]));
    expect(p.reason).toBe(
      "moving the production tag failed for slurmd; 2 tags rolled back, 3 of 3 production tags on their old digests",
    );
  });

  it("every read-back of one production tag fails: all tags end on their old digests, reported exactly", async () => {
    const t = await project3();
    const before = await t.production();
    const p = await withFaults([{ method: "GET", path: t.tagPath("slurmd"), action: { kind: "status", status: 500 } }], () => t.run("B"));
    expect(await t.production()).toEqual(before);
    expect(p.outcome).toBe("rolled-back");
    expect(p.failed.map((f) => [f.image, /get manifest .*answered 500/.test(f.error)])).toEqual([["slurmd", true]]);
    expect(p.rolledBack.map((m) => m.image)).toEqual(["slurmctld", "slurmd"]);
    expect(p.notRestored).toEqual([]);
    expect(states(p)).toEqual(IMAGES.map((image, i) => [image, "old", before[i]]));
  });

  it("no read of one production tag works after the move: restored, but reported unknown and NOT restored, never rolled back", async () => {
    const t = await project3();
    const before = await t.production();
    const p = await withFaults(
      [
        // Its check and the check before its move pass; then every read fails.
        { method: "HEAD", path: t.tagPath("slurmd"), action: { kind: "status", status: 503 }, after: 2 },
        { method: "GET", path: t.tagPath("slurmd"), action: { kind: "status", status: 503 } },
      ],
      () => t.run("B"),
    );
    // The registry holds the old digests (the restore's PUT went through) ...
    expect(await t.production()).toEqual(before);
    // ... but this run could not see it, and says so.
    expect(p.promoted).toBe(false);
    expect(p.outcome).toBe("not-restored");
    expect(states(p)).toEqual([
      ["slurmctld", "old", before[0]],
      ["slurmd", "unknown", null],
      ["login", "old", before[2]],
    ]);
    expect(p.rolledBack.map((m) => m.image)).toEqual(["slurmctld"]);
    expect(p.notRestored.map((m) => [m.image, m.to])).toEqual([["slurmd", null]]);
    expect(p.notRestored[0]?.why).toMatch(/could not be read back after retries/);
    expect(p.reason).toMatch(/1 could NOT be restored$/);
  });

  it("a first promotion whose tags cannot be deleted: the new tags are listed NOT restored, the untouched one is not", async () => {
    const t = await project3(false);
    const p = await withFaults([{ method: "PUT", path: t.tagPath("slurmd"), action: { kind: "reset-after" } }], () => t.run("B"));
    const now = await t.production();
    expect(now).toEqual([t.digests("B")[0], t.digests("B")[1], null]);
    expect(p.outcome).toBe("not-restored");
    expect(states(p)).toEqual([
      ["slurmctld", "new", now[0]],
      ["slurmd", "new", now[1]],
      ["login", "old", null],
    ]);
    expect(p.notRestored.map((m) => m.image)).toEqual(["slurmctld", "slurmd"]);
    expect(p.notRestored.every((m) => /cannot delete a tag alone/.test(m.why))).toBe(true);
    expect(p.rolledBack).toEqual([]);
    const md = renderMarkdown({ promotion: p, images: [], errors: [], context: { branch: "main", defaultBranch: "main" }, tags: null } as unknown as Report);
    expect(md).toMatch(/NOT restored \(fix by hand\):\n- `[^`]+\/slurmctld:25\.11-ubuntu24\.04-latest` left at sha256:/);
    expect(md).toMatch(/\| `[^`]+\/login:25\.11-ubuntu24\.04-latest` \| old \| - \|/);
  });

  it("another writer changes a production tag mid-run: stops, restores what it moved, reports the conflict", async () => {
    const t = await project3();
    const before = await t.production();
    const other = t.digests("C")[2] as string;
    const direct = observer();
    let wrote = false;
    const p = await withFaults([], async () => {
      proxy.chaos = ({ method, path }) => {
        // While this run moves slurmctld, someone else points login's production tag at C.
        if (wrote || method !== "PUT" || !t.tagPath("slurmctld").test(path)) return undefined;
        wrote = true;
        void direct.copyManifest(`${registry.host}${t.repo}/login@${other}`, PROD);
        return { kind: "delay", ms: 500 };
      };
      return t.run("B");
    });
    const now = await t.production();
    expect(now).toEqual([before[0], before[1], other]);
    expect(p.promoted).toBe(false);
    expect(p.outcome).toBe("conflict");
    expect(p.conflicts).toEqual([{ image: "login", ref: `${t.path}/login:${PROD}`, expected: before[2], found: other }]);
    expect(p.rolledBack.map((m) => m.image)).toEqual(["slurmctld", "slurmd"]);
    expect(p.notRestored).toEqual([]);
    expect(states(p)).toEqual([
      ["slurmctld", "old", before[0]],
      ["slurmd", "old", before[1]],
      ["login", "other", other],
    ]);
    expect(p.reason).toMatch(/^conflict: another writer changed .*\/login:25\.11-ubuntu24\.04-latest during the promotion; 2 tags rolled back/);
    expect(renderMarkdown({ promotion: p, images: [], errors: [], context: {}, tags: null } as unknown as Report)).toMatch(
      /Not promoted \(conflict\)[\s\S]*Conflict \(another writer changed these production tags during the run\):\n- `[^`]+\/login:/,
    );
  });

  it("two promotions at once never both report success, and a success is what the registry holds", async () => {
    for (let round = 0; round < 6; round++) {
      const t = await project3();
      const slow = client();
      // Stagger them a little differently each round.
      proxy.chaos = ({ method }) => (method === "PUT" && Math.random() < 0.5 ? { kind: "delay", ms: 5 + round * 7 } : undefined);
      const [b, c] = await Promise.all([t.run("B"), t.run("C", slow)]);
      proxy.chaos = undefined;
      const now = await t.production();
      expect([b.promoted, c.promoted], `round ${round}: ${b.reason} / ${c.reason}`).not.toEqual([true, true]);
      if (b.promoted) expect(now).toEqual(t.digests("B"));
      if (c.promoted) expect(now).toEqual(t.digests("C"));
      for (const p of [b, c]) if (!p.promoted) expect(["conflict", "rolled-back", "not-restored"]).toContain(p.outcome);
    }
  });

  it("a short seeded soak (8 images, fault rates up to 60 %): no MIXED left unreported, no report contradicted by the registry", async () => {
    const counts = await runSoak({ promotions: 24, seed: 7, concurrentEvery: 8 });
    process.stdout.write(`${formatSoak(counts)}\n`);
    expect(counts.promotions).toBeGreaterThanOrEqual(24);
    expect(counts.faultsInjected).toBeGreaterThan(100);
    expect(counts.mixedUnreported).toBe(0);
    expect(counts.mismatches).toBe(0);
    expect(counts.bothSucceeded).toBe(0);
    expect(counts.success + counts.cleanFailure + counts.mixed).toBe(counts.promotions - 2 * counts.concurrentPairs);
  }, 300_000);
});
