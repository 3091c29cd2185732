import { dag } from "@dagger.io/dagger";
import { describe, expect, it } from "vitest";
import { CACHE_LABELS, scopeOf } from "../../src/cache/cache.js";
import { type CachedBuild, cacheLabelsOf, cacheOptions, directoryContext, noCache, packagesEntry, prepareCache, prepareRunCaches, reusedContainer, reusedEntry } from "../../src/cache/cachedbuild.engine.js";
import { createLogger } from "../../src/core/log.js";
import { loadManifest } from "../../src/core/manifest.js";
import { resolve } from "../../src/build/plan.js";
import { renderMarkdown, type Report } from "../../src/release/report.js";
import { queryOf } from "../support/dagger.js";

const scope = scopeOf("main", "main");

describe("cacheOptions: the cache inputs every entry point takes", () => {
  it("refuses a switch other than on or off, and a maximum age outside 0..365, naming the valid values", () => {
    expect(() => cacheOptions({ switch: "yes", registry: "r.example/p/cache", scope })).toThrow(
      /unknown build cache switch "yes": valid values are on, off/,
    );
    expect(() => cacheOptions({ registry: "r.example/p/cache", scope, maxAgeDays: -1 })).toThrow(/an integer from 0 to 365/);
    expect(() => cacheOptions({ registry: "R.example/p", scope })).toThrow(/registry/);
  });

  it("is off without a registry or when switched off; on otherwise, with the 7-day default", () => {
    expect(cacheOptions({ scope })).toBeNull();
    expect(cacheOptions({ switch: "off", registry: "r.example/p/cache", scope })).toBeNull();
    expect(cacheOptions({ switch: "OFF", registry: "r.example/p/cache", scope })).toBeNull();
    expect(cacheOptions({ registry: "r.example/p/cache/", scope })).toMatchObject({ registry: "r.example/p/cache", maxAgeDays: 7 });
  });
});

describe("a run without the cache", () => {
  it("builds everything, adds no labels, and says why", () => {
    const cached = noCache("switched off");
    expect(reusedEntry(cached, "slurmd")).toBeNull();
    expect(cacheLabelsOf(cached, "slurmd")).toEqual({});
    expect(cached.packages).toEqual({ kind: "build" });
    expect(cached.disabled).toBe("switched off");
  });

  it("a reused image is the entry pulled by digest, as its platform", () => {
    const ref = `r.example/p/cache/slurmd@sha256:${"d".repeat(64)}`;
    const query = queryOf(reusedContainer({ ref, digest: "", tag: "", scope: "default", built: "" }, null, "linux/arm64"));
    expect(query.map((s) => s.operation)).toEqual(["container", "from"]);
    expect(query[0]!.args).toEqual({ platform: "linux/arm64" });
    expect(query[1]!.args).toEqual({ address: ref });
  });
});

describe("the report's build-cache section", () => {
  const report = (cache: Report["cache"]): Report => ({
    schemaVersion: 1,
    ok: true,
    mode: "publish",
    summary: "s",
    context: { branch: "f", commitSha: "0123abcd", defaultBranch: "main", pipelineSource: "push", registry: "r", slurmVersion: "25.11", flavor: "debian13", group: "core" },
    tags: null,
    images: [],
    promotion: null,
    ...(cache ? { cache } : {}),
    errors: [],
    startedAt: "",
    finishedAt: "",
    durationMs: 0,
  });

  it("lists per image reused (from where) or built (which input changed), the package set's hit, times and warnings", () => {
    const md = renderMarkdown(
      report({
        used: true,
        disabled: null,
        registry: "r.example/p/cache",
        scope: "branch:f",
        maxAgeDays: 7,
        lookupMs: 1200,
        writeMs: 300,
        packages: { key: "a".repeat(64), hit: true, from: "r.example/p/cache/packages@sha256:1", reason: null, changed: null, written: null },
        images: [
          { image: "slurmd", key: "b".repeat(64), reused: true, from: "r.example/p/cache/slurmd@sha256:2", reason: null, changed: null, written: null },
          {
            image: "login",
            key: "c".repeat(64),
            reused: false,
            from: null,
            reason: "no entry x-d",
            changed: ["file:rootfs/usr/local/bin/login-entrypoint.sh"],
            written: "r.example/p/cache/login:c-b-f@sha256:3",
          },
        ],
        warnings: ["cache entry r.example/p/cache/sackd:x-d: malformed; rebuilding"],
      }),
    );
    expect(md).toContain("## Build cache");
    expect(md).toContain("| package set | `aaaaaaaaaaaa` | hit | `r.example/p/cache/packages@sha256:1` |");
    expect(md).toContain("| slurmd | `bbbbbbbbbbbb` | reused | `r.example/p/cache/slurmd@sha256:2` |");
    expect(md).toContain("| login | `cccccccccccc` | built | changed: file:rootfs/usr/local/bin/login-entrypoint.sh |");
    expect(md).toContain("- Lookup 1.2 s, writes 0.3 s");
    expect(md).toContain("- cache entry r.example/p/cache/sackd:x-d: malformed; rebuilding");
  });

  it("says when the cache was not used", () => {
    const md = renderMarkdown(
      report({ used: false, disabled: "switched off", registry: null, scope: null, maxAgeDays: null, lookupMs: 0, writeMs: 0, packages: null, images: [], warnings: [] }),
    );
    expect(md).toContain("Not used: switched off");
    expect(renderMarkdown(report(undefined))).not.toContain("Build cache");
  });

  it("names the cache labels", () => {
    expect(Object.values(CACHE_LABELS).every((l) => l.startsWith("org.slinky-containers.cache."))).toBe(true);
  });
});

describe("a run of several platforms", () => {
  it("does not use the build cache, and says why, before any registry request", async () => {
    const manifest = loadManifest();
    const resolved = resolve(manifest, { group: "core", platforms: "linux/amd64,linux/arm64" });
    const options = cacheOptions({ registry: "r.example/p/cache", scope: { kind: "local" } });
    const cached = await prepareCache(dag.directory(), manifest, resolved, options, createLogger());
    expect(cached.plan).toBeNull();
    expect(cached.disabled).toBe("the build cache holds single-platform images; this run builds linux/amd64, linux/arm64");
  });
});

describe("a ci run of several platforms (prepareRunCaches)", () => {
  const manifest = loadManifest();
  const options = cacheOptions({ registry: "r.example/p/cache", scope });
  const recording = () => {
    const calls: { platforms: readonly string[]; images: boolean }[] = [];
    const sessions: unknown[] = [];
    const prepare: typeof prepareCache = async (_d, _m, resolved, _o, _l, lookup = { images: true }) => {
      calls.push({ platforms: resolved.platforms, images: lookup.images });
      sessions.push(lookup.session);
      return noCache(`stand-in for ${resolved.platforms.join(",")}`);
    };
    return { calls, sessions, prepare };
  };

  it("looks up each platform's package set under that platform alone, and no image (an index entry is not recorded)", async () => {
    const resolved = resolve(manifest, { group: "core", platforms: "linux/amd64,linux/arm64" });
    const { calls, sessions, prepare } = recording();
    const caches = await prepareRunCaches(dag.directory(), manifest, resolved, options, createLogger(), prepare);
    // One client, one read of the recipe, one base digest for both platforms.
    expect(sessions[0]).toBeDefined();
    expect(sessions[1]).toBe(sessions[0]);
    expect(calls).toEqual([
      { platforms: ["linux/amd64"], images: false },
      { platforms: ["linux/arm64"], images: false },
    ]);
    expect([...caches.keys()]).toEqual(["linux/amd64", "linux/arm64"]);
    expect(caches.get("linux/arm64")?.disabled).toBe("stand-in for linux/arm64");
  });

  it("keeps a single-platform run as it was: the package set and every image", async () => {
    const resolved = resolve(manifest, { group: "core", platforms: "linux/arm64" });
    const { calls, prepare } = recording();
    await prepareRunCaches(dag.directory(), manifest, resolved, options, createLogger(), prepare);
    expect(calls).toEqual([{ platforms: ["linux/arm64"], images: true }]);
  });

  it("reads each recipe file and walks each folder of the engine once, however often the keys ask", async () => {
    const asked: string[] = [];
    const dir = {
      file: (path: string) => ({ contents: async () => (asked.push(`read ${path}`), "FROM scratch\n") }),
      exists: async (path: string, o: { expectedType: string }) => (asked.push(`exists ${path} ${o.expectedType}`), o.expectedType === "REGULAR_TYPE"),
    } as unknown as Parameters<typeof directoryContext>[0];
    const context = directoryContext(dir);
    for (let i = 0; i < 3; i++) {
      expect(Buffer.from(await context.read("Dockerfile")).toString()).toBe("FROM scratch\n");
      expect(await context.files("Dockerfile")).toEqual(["Dockerfile"]);
    }
    expect(asked.filter((a) => a.startsWith("read"))).toEqual(["read Dockerfile"]);
    expect(asked.filter((a) => a.startsWith("exists"))).toHaveLength(1);
  });

  it("labels only the images the cache looked up (none on a run of several platforms)", () => {
    const key = { key: "k".repeat(64), parts: {} };
    const plan = { registry: "r.example/p/cache", scope, maxAgeDays: 7, keys: { packages: key, images: { slurmd: key } }, packages: { hit: false }, images: {} };
    const packagesOnly = { ...noCache("unused"), disabled: null, plan } as unknown as CachedBuild;
    expect(cacheLabelsOf(packagesOnly, "slurmd")).toEqual({});
    const withImage = { ...packagesOnly, plan: { ...plan, images: { slurmd: { hit: false } } } } as unknown as CachedBuild;
    expect(Object.keys(cacheLabelsOf(withImage, "slurmd"))).toContain(CACHE_LABELS.key);
  });

  it("reports one package-set row per platform", () => {
    const row = (platform: string, hit: boolean) => ({
      platform,
      key: (hit ? "a" : "b").repeat(64),
      hit,
      from: hit ? `r.example/p/cache/packages@sha256:${platform === "linux/arm64" ? "2" : "1"}` : null,
      reason: hit ? null : "no entry",
      changed: hit ? null : ["arg:SLURM_SHA256"],
      written: hit ? null : "r.example/p/cache/packages:b-d@sha256:3",
    });
    const md = renderMarkdown({
      ...({} as Report),
      schemaVersion: 1,
      ok: true,
      mode: "publish",
      summary: "s",
      context: { branch: "main", commitSha: "a1b2c3d4", defaultBranch: "main", pipelineSource: "push", registry: "r.example/p", slurmVersion: "25.11", flavor: "debian13", group: "core" },
      tags: null,
      images: [],
      promotion: null,
      errors: [],
      startedAt: "",
      finishedAt: "",
      durationMs: 0,
      cache: {
        used: true, disabled: null, registry: "r.example/p/cache", scope: "default", maxAgeDays: 7, lookupMs: 0, writeMs: 0,
        packages: null,
        packageSets: [row("linux/amd64", false), row("linux/arm64", true)],
        images: [],
        warnings: [],
      },
    });
    expect(md).toContain("| package set (linux/amd64) | `bbbbbbbbbbbb` | miss | changed: arg:SLURM_SHA256 |");
    expect(md).toContain("| package set (linux/arm64) | `aaaaaaaaaaaa` | hit | `r.example/p/cache/packages@sha256:2` |");
  });
});

describe("the package set's cache entry", () => {
  it("is the package set of the run's platform, labelled with its key and scope, under the cache's packages repository", () => {
    const manifest = loadManifest();
    const resolved = resolve(manifest, { group: "core", platforms: "linux/arm64" });
    const options = cacheOptions({ registry: "r.example/p/cache", scope });
    const key = "a".repeat(64);
    const cached: CachedBuild = {
      ...noCache("unused"),
      disabled: null,
      options,
      plan: {
        registry: "r.example/p/cache",
        scope,
        maxAgeDays: 7,
        keys: { baseDigest: `sha256:${"b".repeat(64)}`, packages: { key, parts: {} }, images: {} },
        packages: { hit: false, reason: "no entry", warnings: [], changed: null },
        images: {},
      },
    };
    const entry = packagesEntry(cached, dag.directory(), manifest, resolved);
    expect(entry.ref.startsWith("r.example/p/cache/packages:")).toBe(true);
    const steps = queryOf(entry.container);
    const build = steps.find((step) => step.operation === "dockerBuild")?.args as { target?: string; platform?: string };
    expect([build?.target, build?.platform]).toEqual(["packages", "linux/arm64"]);
    const labels = steps.filter((step) => step.operation === "withLabel").map((step) => (step.args as { name: string; value: string }).name);
    expect(labels).toEqual(expect.arrayContaining([CACHE_LABELS.key, CACHE_LABELS.scope]));
  });
});
