/**
 * publish, promote and the CI run against a real registry (docker-registry on
 * 127.0.0.1) behind a fault-injecting proxy, with basic auth and with token
 * auth. The "push" is a real push of a tiny synthetic image through the
 * module's client (in the engine it is Dagger's Container.publish).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/core/log.js";
import { RegistryClient } from "../../src/registry/client.js";
import { runCi } from "../../src/release/ci.js";
import { type PushFn } from "../../src/release/publish.js";
import { renderJson, renderMarkdown, type Report, type RunContext } from "../../src/release/report.js";
import { LogCapture, pushSynthetic, type RunningRegistry, type RunningTokenServer, startAuthRegistry } from "../registry/harness.js";
import { type FaultProxy, startFaultProxy } from "../registry/fault-proxy.js";

const CANARY = `canary-${Date.now().toString(36)}-Pa55/w0rd`;
const USER = { username: "gitlab-ci-token", password: CANARY };
const IMAGES = ["slurmctld", "slurmd", "login"];
const SHA_A = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const SHA_B = "b2c3d4e5f60718293a4b5c6d7e8f901234567890";
const PROD = "25.11-ubuntu24.04-latest";

for (const mode of ["token", "htpasswd"] as const) {
  describe(`publish and promote, ${mode} auth, behind a fault proxy`, () => {
    let registry: RunningRegistry;
    let tokens: RunningTokenServer | undefined;
    let proxy: FaultProxy;
    const capture = new LogCapture();
    const log = createLogger({ destination: capture.stream, level: "debug" });
    const reports: Report[] = [];
    let project = 0;

    beforeAll(async () => {
      ({ registry, tokens } = await startAuthRegistry(mode, [USER]));
      proxy = await startFaultProxy(registry.host);
    });
    afterAll(async () => {
      await proxy?.stop();
      await registry?.stop();
      await tokens?.stop();
    });

    /** A fresh project path per test, so tests do not see each other's tags. */
    const newProject = () => `${proxy.host}/group/p${++project}`;
    const client = (password = USER.password) =>
      new RegistryClient({ username: USER.username, password, plainHttp: true, logger: log, minBackoffMs: 20, maxBackoffMs: 200 });
    /** Direct to the registry (no proxy): how the tests look at the result. */
    const observer = () => new RegistryClient({ ...USER, plainHttp: true });
    const direct = (ref: string) => ref.replace(proxy.host, registry.host);

    const context = (registryPath: string, branch: string, commitSha: string): RunContext => ({
      branch,
      commitSha,
      defaultBranch: "main",
      pipelineSource: "push",
      registry: registryPath,
      slurmVersion: "25.11",
      flavor: "ubuntu24.04",
      group: "core",
    });

    async function run(
      registryPath: string,
      branch: string,
      sha: string,
      extra: { password?: string; check?: (image: string) => Promise<void>; push?: PushFn } = {},
    ): Promise<Report> {
      const c = client(extra.password);
      const report = await runCi({
        context: context(registryPath, branch, sha),
        images: IMAGES,
        check: extra.check ?? (async () => {}),
        push: extra.push ?? ((image, ref) => pushSynthetic(c, ref, `${image}-${sha}`)),
        client: () => c,
        concurrency: 2,
        settleMs: 50,
        log,
      });
      reports.push(report);
      return report;
    }

    async function digestAt(ref: string): Promise<string | null> {
      return (await observer().headManifest(direct(ref)))?.digest ?? null;
    }

    async function tagsOf(registryPath: string, tag: string): Promise<(string | null)[]> {
      return Promise.all(IMAGES.map((image) => digestAt(`${registryPath}/${image}:${tag}`)));
    }

    it("on a feature branch: pushes commit and branch tags on one digest, leaves production alone", async () => {
      const path = newProject();
      const main = await run(path, "main", SHA_A);
      expect(main.ok).toBe(true);
      const production = await tagsOf(path, PROD);

      const report = await run(path, "feature/X_y", SHA_B);
      expect(report.ok).toBe(true);
      expect(report.mode).toBe("publish");
      expect(report.promotion).toBeNull();
      const commit = await tagsOf(path, "25.11-ubuntu24.04-feature-x-y-b2c3d4e5");
      const branch = await tagsOf(path, "25.11-ubuntu24.04-feature-x-y-latest");
      expect(commit.every((d) => d?.startsWith("sha256:"))).toBe(true);
      expect(branch).toEqual(commit);
      expect(report.images.map((i) => i.digest)).toEqual(commit);
      expect(await tagsOf(path, PROD)).toEqual(production);
      expect(production).not.toEqual(commit);
      for (const image of report.images) {
        expect(image.references).toEqual([
          `${path}/${image.image}:25.11-ubuntu24.04-feature-x-y-b2c3d4e5`,
          `${path}/${image.image}:25.11-ubuntu24.04-feature-x-y-latest`,
        ]);
        expect(image.promoted).toBe(false);
        expect(image.sizeBytes).toBeGreaterThan(100);
      }
    });

    it("on the default branch: promotes with the digest identical, and a re-run changes nothing", async () => {
      const path = newProject();
      const first = await run(path, "main", SHA_A);
      expect(first.ok).toBe(true);
      expect(first.mode).toBe("publish-and-promote");
      expect(first.promotion?.promoted).toBe(true);
      expect(first.promotion?.moved).toHaveLength(IMAGES.length);
      const commit = await tagsOf(path, "25.11-ubuntu24.04-main-a1b2c3d4");
      expect(await tagsOf(path, "25.11-ubuntu24.04-main-latest")).toEqual(commit);
      expect(await tagsOf(path, PROD)).toEqual(commit);
      expect(first.images.every((i) => i.promoted && i.references.includes(`${path}/${i.image}:${PROD}`))).toBe(true);

      const again = await run(path, "main", SHA_A);
      expect(again.ok).toBe(true);
      expect(again.promotion?.moved).toHaveLength(0);
      expect(again.promotion?.unchanged).toHaveLength(IMAGES.length);
      expect(await tagsOf(path, PROD)).toEqual(commit);
      expect(again.images.map((i) => i.digest)).toEqual(first.images.map((i) => i.digest));
    });

    it("moves the branch -latest tag to the new commit and keeps the old commit tag", async () => {
      const path = newProject();
      await run(path, "dev", SHA_A);
      const a = await tagsOf(path, "25.11-ubuntu24.04-dev-a1b2c3d4");
      expect(await tagsOf(path, "25.11-ubuntu24.04-dev-latest")).toEqual(a);
      await run(path, "dev", SHA_B);
      const b = await tagsOf(path, "25.11-ubuntu24.04-dev-b2c3d4e5");
      expect(await tagsOf(path, "25.11-ubuntu24.04-dev-latest")).toEqual(b);
      expect(b).not.toEqual(a);
      expect(await tagsOf(path, "25.11-ubuntu24.04-dev-a1b2c3d4")).toEqual(a);
    });

    it("one image's push refused: the run fails naming it, and no production tag moves", async () => {
      const path = newProject();
      await run(path, "main", SHA_A);
      const before = await tagsOf(path, PROD);
      const repo = new URL(`http://${path}`).pathname;
      proxy.faults.push({
        method: "PUT",
        path: new RegExp(`^/v2${repo}/slurmd/manifests/`),
        action: { kind: "status", status: 403, body: JSON.stringify({ errors: [{ code: "DENIED", message: "push refused by the test" }] }) },
      });
      const pushesBefore = proxy.requests.length;
      try {
        const report = await run(path, "main", SHA_B);
        expect(report.ok).toBe(false);
        expect(report.summary).toMatch(/1 of 3 images failed to publish \(slurmd\); no production tag moved/);
        const slurmd = report.images.find((i) => i.image === "slurmd");
        expect(slurmd?.error).toMatch(/permission denied \(403\)/);
        expect(report.promotion?.promoted).toBe(false);
        expect(report.promotion?.moved).toEqual([]);
        expect(await tagsOf(path, PROD)).toEqual(before);
        // 403 is never retried: exactly one refused manifest PUT.
        const refused = proxy.requests.slice(pushesBefore).filter((r) => r.outcome === 403);
        expect(refused).toHaveLength(1);
      } finally {
        proxy.faults.length = 0;
      }
    });

    it("a 500 storm on one production tag mid-promotion rolls back the tags already moved", async () => {
      const path = newProject();
      await run(path, "main", SHA_A);
      const before = await tagsOf(path, PROD);
      const repo = new URL(`http://${path}`).pathname;
      proxy.faults.push({
        method: "PUT",
        path: new RegExp(`^/v2${repo}/login/manifests/${PROD}$`),
        action: { kind: "status", status: 500 },
      });
      const mark = proxy.requests.length;
      try {
        const report = await run(path, "main", SHA_B);
        expect(report.ok).toBe(false);
        const p = report.promotion;
        expect(p?.promoted).toBe(false);
        expect(p?.failed.map((f) => f.image)).toEqual(["login"]);
        expect(p?.failed[0]?.error).toMatch(/answered 500/);
        // login's move failed: possibly moved, so restored too (read back on its old digest, no write needed).
        expect(p?.rolledBack.map((m) => m.image).sort()).toEqual(["login", "slurmctld", "slurmd"]);
        expect(p?.outcome).toBe("rolled-back");
        expect(p?.tags.map((t) => [t.image, t.state, t.now])).toEqual(IMAGES.map((image, i) => [image, "old", before[i]]));
        expect(p?.notRestored).toEqual([]);
        expect(await tagsOf(path, PROD)).toEqual(before);
        // Bounded: the first attempt plus 4 retries, then give up.
        const storm = proxy.requests.slice(mark).filter((r) => r.outcome === 500);
        expect(storm).toHaveLength(5);
        expect(renderMarkdown(report)).toMatch(/Rolled back:/);
      } finally {
        proxy.faults.length = 0;
      }
    });

    it("connection resets on one production tag, every time: production tags stay where they were", async () => {
      const path = newProject();
      await run(path, "main", SHA_A);
      const before = await tagsOf(path, PROD);
      const repo = new URL(`http://${path}`).pathname;
      proxy.faults.push({ method: "PUT", path: new RegExp(`^/v2${repo}/slurmctld/manifests/${PROD}$`), action: { kind: "reset" } });
      try {
        const report = await run(path, "main", SHA_B);
        expect(report.ok).toBe(false);
        expect(report.promotion?.failed[0]?.error).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
        expect(await tagsOf(path, PROD)).toEqual(before);
        // The run's own commit tags did land.
        expect(await tagsOf(path, "25.11-ubuntu24.04-main-b2c3d4e5")).toEqual(report.images.map((i) => i.digest));
      } finally {
        proxy.faults.length = 0;
      }
    });

    it("survives transient faults: 500s, 429 with Retry-After, and connection resets", async () => {
      const path = newProject();
      const repo = new URL(`http://${path}`).pathname;
      proxy.faults.push(
        { method: "GET", path: new RegExp(`^/v2${repo}/slurmd/manifests/`), action: { kind: "status", status: 500 }, times: 2 },
        { method: "PUT", path: new RegExp(`^/v2${repo}/slurmctld/manifests/${PROD}$`), action: { kind: "status", status: 429, headers: { "retry-after": "1" } }, times: 1 },
        { method: "PUT", path: new RegExp(`^/v2${repo}/login/blobs/uploads/`), action: { kind: "reset" }, times: 1 },
        { method: "HEAD", path: new RegExp(`^/v2${repo}/login/manifests/`), action: { kind: "status", status: 503 }, times: 1 },
      );
      const mark = proxy.requests.length;
      try {
        const report = await run(path, "main", SHA_A);
        expect(report.errors).toEqual([]);
        expect(report.ok).toBe(true);
        expect(await tagsOf(path, PROD)).toEqual(report.images.map((i) => i.digest));
        const seen = proxy.requests.slice(mark);
        expect(seen.filter((r) => r.outcome === 500)).toHaveLength(2);
        expect(seen.filter((r) => r.outcome === 503)).toHaveLength(1);
        expect(seen.filter((r) => r.outcome === "reset")).toHaveLength(1);
        const throttled = seen.findIndex((r) => r.outcome === 429);
        const retry = seen.slice(throttled + 1).find((r) => r.method === "PUT" && r.path === seen[throttled]?.path);
        expect((retry?.at ?? 0) - (seen[throttled]?.at ?? 0)).toBeGreaterThanOrEqual(1000);
      } finally {
        proxy.faults.length = 0;
      }
    });

    it("a 500 storm while pushing one image fails that image after bounded attempts; nothing is promoted", async () => {
      const path = newProject();
      const repo = new URL(`http://${path}`).pathname;
      proxy.faults.push({ method: "POST", path: new RegExp(`^/v2${repo}/slurmd/blobs/uploads/`), action: { kind: "status", status: 502 } });
      const mark = proxy.requests.length;
      try {
        const report = await run(path, "main", SHA_A);
        expect(report.ok).toBe(false);
        expect(report.images.find((i) => i.image === "slurmd")?.error).toMatch(/push blob .*slurmd.*answered 502/);
        expect(report.promotion?.moved).toEqual([]);
        expect(await tagsOf(path, PROD)).toEqual([null, null, null]);
        expect(proxy.requests.slice(mark).filter((r) => r.outcome === 502)).toHaveLength(5);
      } finally {
        proxy.faults.length = 0;
      }
    });

    it("first promotion failing half-way: reports the new tags it could not remove", async () => {
      const path = newProject();
      const repo = new URL(`http://${path}`).pathname;
      proxy.faults.push({ method: "PUT", path: new RegExp(`^/v2${repo}/login/manifests/${PROD}$`), action: { kind: "status", status: 500 } });
      try {
        const report = await run(path, "main", SHA_A);
        expect(report.ok).toBe(false);
        const p = report.promotion;
        // distribution 2.8 cannot delete a tag alone (only a manifest, with all its tags).
        expect(p?.notRestored.map((m) => m.image).sort()).toEqual(["slurmctld", "slurmd"]);
        expect(p?.notRestored[0]?.why).toMatch(/cannot delete a tag alone/);
        expect(p?.reason).toMatch(/2 could NOT be restored/);
        expect(renderMarkdown(report)).toMatch(/NOT restored/);
        // The commit tags are intact (nothing was deleted by digest).
        expect(await tagsOf(path, "25.11-ubuntu24.04-main-a1b2c3d4")).toEqual(report.images.map((i) => i.digest));
      } finally {
        proxy.faults.length = 0;
      }
    });

    it("a wrong password fails with a clear error, no retry storm and no password in the report", async () => {
      const path = newProject();
      const mark = proxy.requests.length;
      const tokenMark = tokens?.requests.length ?? 0;
      const report = await run(path, "main", SHA_A, { password: `${CANARY}-wrong` });
      expect(report.ok).toBe(false);
      for (const image of report.images) {
        expect(image.error).toMatch(/authentication failed/);
        expect(image.error).toContain(`${path}/${image.image}:25.11-ubuntu24.04-main-a1b2c3d4`);
        expect(image.error).toContain(USER.username);
      }
      // Per image at most one unauthenticated probe and one try with the credentials.
      expect(proxy.requests.length - mark).toBeLessThanOrEqual(2 * IMAGES.length);
      if (tokens) expect(tokens.requests.length - tokenMark).toBeLessThanOrEqual(IMAGES.length);
      expect(renderJson(report)).not.toContain(CANARY);
    });

    it("merge-request and tag pipelines (no branch) build and smoke-test without pushing", async () => {
      const path = newProject();
      const checked: string[] = [];
      const report = await run(path, "", SHA_A, {
        check: async (image) => {
          checked.push(image);
        },
        push: async () => {
          throw new Error("must not push");
        },
      });
      expect(report.ok).toBe(true);
      expect(report.mode).toBe("build-only");
      expect(checked.sort()).toEqual([...IMAGES].sort());
      expect(report.images.every((i) => i.built === true && !i.pushed)).toBe(true);
      expect(await observer().listTags(direct(`${path}/slurmd`))).toEqual([]);
    });

    it("a failed build or smoke test pushes nothing", async () => {
      const path = newProject();
      const report = await run(path, "main", SHA_A, {
        check: async (image) => {
          if (image === "login") throw new Error("smoke test: sshd -t failed");
        },
      });
      expect(report.ok).toBe(false);
      expect(report.summary).toMatch(/1 of 3 images failed to build or pass smoke tests \(login\): nothing pushed/);
      expect(await tagsOf(path, "25.11-ubuntu24.04-main-a1b2c3d4")).toEqual([null, null, null]);
    });

    it("never shows the password: not in a log line, not in a report", () => {
      expect(capture.lines.length).toBeGreaterThan(50);
      expect(capture.lines.some((l) => l.includes('"level":20'))).toBe(true);
      for (const line of capture.lines) expect(line).not.toContain(CANARY);
      for (const report of reports) {
        expect(renderJson(report)).not.toContain(CANARY);
        expect(renderMarkdown(report)).not.toContain(CANARY);
        expect(JSON.stringify(report)).not.toContain(CANARY);
      }
    });
  });
}
