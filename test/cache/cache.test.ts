/**
 * The build cache against a real registry (Debian's docker-registry on
 * 127.0.0.1, token auth, so cross-repository mounts need both scopes), with a
 * fault proxy in front that records every request and injects failures.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  CACHE_LABELS,
  cacheRepository,
  copyAcross,
  entryLabels,
  entryTag,
  lookup,
  newestTag,
  type Scope,
  scopeOf,
  writeEntry,
} from "../../src/cache/cache.js";
import { encodeParts } from "../../src/cache/keys.js";
import { createLogger } from "../../src/core/log.js";
import { MEDIA_TYPES, RegistryClient } from "../../src/registry/client.js";
import { parseRef } from "../../src/registry/reference.js";
import { freePort, LogCapture, pushSynthetic, pushSyntheticIndex, type RunningRegistry, type RunningTokenServer, startAuthRegistry } from "../registry/harness.js";
import { type FaultProxy, startFaultProxy } from "../registry/fault-proxy.js";

const CANARY = `canary-${Date.now().toString(36)}-cache:pw`;
const USER = { username: "ci-user", password: CANARY };
const KEY = "a".repeat(64);
const OTHER_KEY = "b".repeat(64);
const DEFAULT: Scope = { kind: "default" };
const FEATURE = scopeOf("feature/x", "main");

describe("build cache in a real registry (token auth)", () => {
  let registry: RunningRegistry;
  let tokens: RunningTokenServer | undefined;
  let proxy: FaultProxy;
  const capture = new LogCapture();
  const log = createLogger({ destination: capture.stream, level: "debug" });
  const client = () => new RegistryClient({ ...USER, plainHttp: true, logger: log, minBackoffMs: 10, maxBackoffMs: 40, retries: 2 });
  let n = 0;
  /** A fresh project path per test, so entries do not leak between tests. */
  let project: string;
  const cacheOf = (name: string) => cacheRepository(`${proxy.host}/${project}/cache`, name);

  /** An image as `ci` pushes it: built with the cache labels, under its commit tag. */
  const pushImage = async (name: string, seed: string, key: string, scope: Scope, built = new Date().toISOString(), parts = "") =>
    parseRef(await pushSynthetic(client(), `${proxy.host}/${project}/${name}:c-${seed}`, seed, "oci", entryLabels(key, scope, built, parts)));

  beforeAll(async () => {
    ({ registry, tokens } = await startAuthRegistry("token", [USER]));
    proxy = await startFaultProxy(registry.host);
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await tokens?.stop();
    expect(capture.text()).not.toContain(CANARY);
  });
  beforeEach(() => {
    project = `group/p${++n}`;
    proxy.faults.length = 0;
  });

  it("misses on an empty cache, saying where it looked", async () => {
    const result = await lookup({ client: client(), repository: cacheOf("slurmd"), key: KEY, scope: FEATURE });
    expect(result.hit).toBe(false);
    if (result.hit) return;
    expect(result.reason).toBe(`no entry ${KEY.slice(0, 48)}-d; no entry ${KEY.slice(0, 48)}-b-feature-x`);
    expect(result.warnings).toEqual([]);
  });

  it("writes an entry by manifest copy (blobs mounted, none uploaded), finds it by key, adopts it under a new tag with the same digest", async () => {
    const pushed = await pushImage("slurmd", "w1", KEY, DEFAULT);
    const before = proxy.requests.length;
    const written = await writeEntry({ client: client(), source: pushed, repository: cacheOf("slurmd"), key: KEY, scope: DEFAULT });
    expect(written.error).toBeNull();
    expect(written.ref).toBe(`${proxy.host}/${project}/cache/slurmd:${entryTag(KEY, DEFAULT)}@${pushed.digest}`);
    const writes = proxy.requests.slice(before);
    const mounts = writes.filter((r) => r.method === "POST" && r.path.includes("mount="));
    expect(mounts.length).toBe(2); // config and layer
    expect(mounts.every((r) => r.outcome === 201)).toBe(true);
    expect(writes.some((r) => r.method === "PATCH" || (r.method === "PUT" && r.path.includes("/blobs/uploads/")))).toBe(false);

    const result = await lookup({ client: client(), repository: cacheOf("slurmd"), key: KEY, scope: DEFAULT });
    expect(result.hit).toBe(true);
    if (!result.hit) return;
    expect(result.entry.digest).toBe(pushed.digest);
    expect(result.entry.ref).toBe(`${proxy.host}/${project}/cache/slurmd@${pushed.digest}`);

    // The next commit's run adopts it: same digest under its own commit tag.
    const target = { registry: proxy.host, repository: `${project}/slurmd2`, tag: "25.11-debian13-main-0123abcd" };
    const adopted = await copyAcross(client(), parseRef(result.entry.ref), target);
    expect(adopted).toBe(`${proxy.host}/${project}/slurmd2:25.11-debian13-main-0123abcd@${pushed.digest}`);
    expect((await client().getManifest(`${proxy.host}/${project}/slurmd2:25.11-debian13-main-0123abcd`)).digest).toBe(pushed.digest);
  });

  it("a default-branch run ignores an entry a feature branch wrote; that branch reads it; another branch does not", async () => {
    const pushed = await pushImage("login", "f1", KEY, FEATURE);
    expect((await writeEntry({ client: client(), source: pushed, repository: cacheOf("login"), key: KEY, scope: FEATURE })).error).toBeNull();
    const on = async (scope: Scope) => lookup({ client: client(), repository: cacheOf("login"), key: KEY, scope });
    expect((await on(DEFAULT)).hit).toBe(false);
    expect((await on(FEATURE)).hit).toBe(true);
    expect((await on(scopeOf("feature/y", "main"))).hit).toBe(false);
    // A branch reads what the default branch wrote.
    const main = await pushImage("login", "m1", OTHER_KEY, DEFAULT);
    await writeEntry({ client: client(), source: main, repository: cacheOf("login"), key: OTHER_KEY, scope: DEFAULT });
    const fromDefault = await lookup({ client: client(), repository: cacheOf("login"), key: OTHER_KEY, scope: FEATURE });
    expect(fromDefault.hit && fromDefault.entry.scope).toBe("default");
  });

  it("a feature branch's image put under a default-scope tag is refused by its scope label", async () => {
    const pushed = await pushImage("sackd", "forged", KEY, FEATURE);
    await copyAcross(client(), pushed, { ...cacheOf("sackd"), tag: entryTag(KEY, DEFAULT) });
    const result = await lookup({ client: client(), repository: cacheOf("sackd"), key: KEY, scope: DEFAULT });
    expect(result.hit).toBe(false);
    if (result.hit) return;
    expect(result.warnings.join("\n")).toMatch(/says scope "branch:feature-x"/);
  });

  it("a corrupted entry (another key's image under this key's tag, an index, a missing config) is rebuilt, with a warning", async () => {
    const foreign = await pushImage("slurmdbd", "foreign", OTHER_KEY, DEFAULT);
    await copyAcross(client(), foreign, { ...cacheOf("slurmdbd"), tag: entryTag(KEY, DEFAULT) });
    const r1 = await lookup({ client: client(), repository: cacheOf("slurmdbd"), key: KEY, scope: DEFAULT });
    expect(r1.hit).toBe(false);
    expect(r1.warnings.join("\n")).toMatch(/is foreign: its key label is "b{64}"/);

    const c = client();
    await pushSyntheticIndex(c, `${proxy.host}/${project}/cache/slurmrestd:${entryTag(KEY, DEFAULT)}`, "idx");
    const r2 = await lookup({ client: c, repository: cacheOf("slurmrestd"), key: KEY, scope: DEFAULT });
    expect(r2.hit).toBe(false);
    expect(r2.warnings.join("\n")).toMatch(/malformed: media type application\/vnd\.oci\.image\.index\.v1\+json/);

    // A manifest whose config blob the registry does not have.
    const broken = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${"c".repeat(64)}`, size: 2 },
        layers: [],
      }),
    );
    await c.putManifest(`${proxy.host}/${project}/cache/sackd:${entryTag(KEY, DEFAULT)}`, broken, MEDIA_TYPES.ociManifest).catch(() => undefined);
    const r3 = await lookup({ client: c, repository: cacheOf("sackd"), key: KEY, scope: DEFAULT });
    expect(r3.hit).toBe(false);
    if (!r3.hit) expect(r3.reason).toMatch(/unreadable|no entry/);
  });

  it("an expired entry is not reused; a longer maximum age reuses it", async () => {
    const old = new Date(Date.now() - 8 * 86_400_000).toISOString();
    const pushed = await pushImage("slurmctld", "old", KEY, DEFAULT, old);
    await writeEntry({ client: client(), source: pushed, repository: cacheOf("slurmctld"), key: KEY, scope: DEFAULT });
    const r1 = await lookup({ client: client(), repository: cacheOf("slurmctld"), key: KEY, scope: DEFAULT });
    expect(r1.hit).toBe(false);
    if (!r1.hit) expect(r1.reason).toMatch(/expired \(built .*, older than 7 days\)/);
    expect((await lookup({ client: client(), repository: cacheOf("slurmctld"), key: KEY, scope: DEFAULT, maxAgeDays: 30 })).hit).toBe(true);
  });

  it("a registry refusing cache reads (403, 500 storm, resets) or down: a miss with a warning, never a failure", async () => {
    const pushed = await pushImage("slurmd", "r1", KEY, DEFAULT);
    await writeEntry({ client: client(), source: pushed, repository: cacheOf("slurmd"), key: KEY, scope: DEFAULT });
    for (const action of [
      { kind: "status" as const, status: 403 },
      { kind: "status" as const, status: 500 },
      { kind: "reset" as const },
    ]) {
      proxy.faults.length = 0;
      proxy.faults.push({ path: /\/cache\/slurmd\/manifests\//, action });
      const result = await lookup({ client: client(), repository: cacheOf("slurmd"), key: KEY, scope: DEFAULT });
      expect(result.hit, JSON.stringify(action)).toBe(false);
      expect(result.warnings.join("\n")).toMatch(/unreadable/);
    }
    proxy.faults.length = 0;
    const down = cacheRepository(`127.0.0.1:${await freePort()}/${project}/cache`, "slurmd");
    const result = await lookup({ client: client(), repository: down, key: KEY, scope: DEFAULT });
    expect(result.hit).toBe(false);
    expect(result.warnings.join("\n")).toMatch(/unreadable: .*ECONNREFUSED/);
  });

  it("a refused cache write is a warning returned, not a throw", async () => {
    const pushed = await pushImage("login", "w2", KEY, DEFAULT);
    proxy.faults.push({ method: "PUT", path: /\/cache\/login\/manifests\//, action: { kind: "status", status: 403 } });
    const written = await writeEntry({ client: client(), source: pushed, repository: cacheOf("login"), key: KEY, scope: DEFAULT });
    expect(written.ref).toBeNull();
    expect(written.error).toMatch(/cache write .*cache\/login:a{48}-d failed: .*permission denied \(403\)/);
  });

  it("on a miss, names the inputs that changed since the scope's newest entry", async () => {
    const before = { stage: "1".repeat(64), "file:rootfs/usr/local/bin/login-entrypoint.sh": "2".repeat(64) };
    const pushed = await pushImage("login", "p1", KEY, DEFAULT, undefined, encodeParts(before));
    await writeEntry({ client: client(), source: pushed, repository: cacheOf("login"), key: KEY, scope: DEFAULT });
    expect((await client().headManifest({ ...cacheOf("login"), tag: newestTag(DEFAULT) }))?.digest).toBe(pushed.digest);
    const after = { ...before, "file:rootfs/usr/local/bin/login-entrypoint.sh": "3".repeat(64) };
    const result = await lookup({ client: client(), repository: cacheOf("login"), key: OTHER_KEY, scope: DEFAULT, parts: after });
    expect(result.hit).toBe(false);
    if (!result.hit) expect(result.changed).toEqual(["file:rootfs/usr/local/bin/login-entrypoint.sh"]);
  });

  it("puts no credential in a key, a label or a tag", () => {
    const labels = entryLabels(KEY, FEATURE, new Date().toISOString(), "x=1");
    expect(JSON.stringify(labels)).not.toContain(CANARY);
    expect(Object.keys(labels)).toEqual(Object.values(CACHE_LABELS));
  });
});
