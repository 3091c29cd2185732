/**
 * The Dagger wiring of publish, promote and ci, without an engine: what the
 * SDK's module scanner exposes to `dagger call`, the lazy queries the engine
 * would receive, and ci's report when nothing can be built.
 */
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { dag, type Directory } from "@dagger.io/dagger";
import { beforeAll, describe, expect, it } from "vitest";
import { SlinkyContainers } from "../src/index.js";
import { loadManifest } from "../src/core/manifest.js";
import { publishable, registryHost, reportDirectory, smokeTested } from "../src/release/pipeline.engine.js";
import type { Report } from "../src/release/report.js";
import { smokeScript } from "../src/build/smoke.js";
import { cliName, queryOf, type ScannedObject, scanModule, srcFiles } from "./support/dagger.js";

const ROOT = join(import.meta.dirname, "..");

/** The scanner's own objects (its JSON form leaves out the cache policy). */
async function cachePolicies(): Promise<Record<string, string | undefined>> {
  const sdkDist = dirname(createRequire(import.meta.url).resolve("@dagger.io/dagger"));
  const clientGen = join(mkdtempSync(join(tmpdir(), "dagger-scan-")), "client.gen.ts");
  copyFileSync(join(sdkDist, "api", "client.gen.d.ts"), clientGen);
  const files = srcFiles();
  const { scan } = (await import(pathToFileURL(join(sdkDist, "module", "introspector", "index.js")).href)) as {
    scan: (files: string[], name: string, load: boolean) => Promise<{ objects: Record<string, { methods: Record<string, { cache?: string }> }> }>;
  };
  const module = await scan([...files, clientGen], "slinky-containers", false);
  const methods = module.objects.SlinkyContainers?.methods ?? {};
  return Object.fromEntries(Object.entries(methods).map(([name, fn]) => [name, fn.cache]));
}


describe("publish, promote and ci as dagger call sees them", () => {
  let module: ScannedObject;
  let cache: Record<string, string | undefined>;
  beforeAll(async () => {
    module = (await scanModule()).objects.SlinkyContainers!;
    cache = await cachePolicies();
  }, 120_000);

  const args = (fn: string) =>
    Object.fromEntries(
      Object.values(module.methods[fn]!.arguments).map((a) => [a.name, [a.type.name ?? a.type.kind, a.isOptional ? "optional" : "required", a.defaultValue]]),
    );

  it("never caches publish, promote or ci (they have side effects)", () => {
    expect(cache.publish).toBe("never");
    expect(cache.promote).toBe("never");
    expect(cache.ci).toBe("never");
    expect(cache.build).toBeUndefined();
  });

  it("takes the password as a Secret, never as a string", () => {
    for (const fn of ["publish", "promote", "ci"]) {
      expect(module.methods[fn]!.arguments.password!.type).toEqual({ kind: "OBJECT_KIND", name: "Secret" });
      expect(module.methods[fn]!.arguments.username!.type.kind).toBe("STRING_KIND");
    }
  });

  it("ci returns a Directory (the report) and takes the job's values, with the manifest's defaults", () => {
    const { defaults } = loadManifest();
    expect(module.methods.ci!.returnType).toEqual({ kind: "OBJECT_KIND", name: "Directory" });
    expect(args("ci")).toEqual({
      branch: ["STRING_KIND", "required", undefined],
      commitSha: ["STRING_KIND", "required", undefined],
      defaultBranch: ["STRING_KIND", "required", undefined],
      pipelineSource: ["STRING_KIND", "required", undefined],
      platforms: ["STRING_KIND", "optional", undefined],
      registry: ["STRING_KIND", "required", undefined],
      username: ["STRING_KIND", "required", undefined],
      password: ["Secret", "required", undefined],
      slurmVersion: ["STRING_KIND", "required", defaults.slurmVersion],
      flavor: ["STRING_KIND", "required", defaults.flavor],
      group: ["STRING_KIND", "required", defaults.group],
      commitTimestamp: ["STRING_KIND", "optional", undefined],
      buildCache: ["STRING_KIND", "required", "on"],
      cacheRegistry: ["STRING_KIND", "optional", undefined],
      cacheMaxAgeDays: ["INTEGER_KIND", "required", 7],
      signing: ["STRING_KIND", "required", "off"],
      signingKey: ["Secret", "optional", undefined],
      signingPassword: ["Secret", "optional", undefined],
      oidcToken: ["Secret", "optional", undefined],
      fulcioUrl: ["STRING_KIND", "optional", undefined],
      rekorUrl: ["STRING_KIND", "optional", undefined],
      certificateIdentity: ["STRING_KIND", "optional", undefined],
      certificateOidcIssuer: ["STRING_KIND", "optional", undefined],
      pipelineUrl: ["STRING_KIND", "optional", undefined],
      jobUrl: ["STRING_KIND", "optional", undefined],
    });
    expect(module.methods.publish!.returnType.kind).toBe("STRING_KIND");
    expect(module.methods.promote!.returnType.kind).toBe("STRING_KIND");
  });

  it("accepts exactly the flags the GitLab job passes to dagger call ci, and gets every required one", () => {
    const script = readFileSync(join(ROOT, "ci", "dagger-ci.sh"), "utf8");
    const call = script.slice(script.indexOf("call ci"), script.indexOf("export --path"));
    const signArgs = [...script.matchAll(/sign_args\+?=\(([^)]*)\)/g)].map((m) => m[1]).join(" ");
    const passed = [...`${call} ${signArgs}`.matchAll(/--([a-z-]+)\s/g)].map((m) => m[1]);
    expect(passed).toEqual(expect.arrayContaining(["signing", "oidc-token", "certificate-identity", "signing-key", "signing-password", "fulcio-url", "rekor-url"]));
    const known = Object.keys(module.methods.ci!.arguments).map(cliName);
    expect(passed.filter((flag) => !known.includes(flag as string))).toEqual([]);
    const required = Object.values(module.methods.ci!.arguments)
      .filter((a) => a.defaultValue === undefined && !a.isOptional)
      .map((a) => cliName(a.name));
    expect(required.filter((flag) => !passed.includes(flag))).toEqual([]);
    expect(call).toMatch(/--password env:CI_REGISTRY_PASSWORD/);
  });
});

describe("the lazy graph of publishing", () => {
  it("pushes with registry auth for the registry's host, the secret passed by reference", () => {
    const secret = dag.setSecret("registry-password", "not-a-real-password");
    const query = queryOf(publishable(dag.container(), "registry.example.com:5050/group/project", "gitlab-ci-token", secret));
    const auth = query.find((step) => step.operation === "withRegistryAuth");
    expect(auth?.args).toMatchObject({ address: "registry.example.com:5050", username: "gitlab-ci-token" });
    expect(typeof auth?.args?.secret).not.toBe("string");
    expect(registryHost("group/project")).toBe("docker.io");
  });

  it("smoke-tests with the image's own script, not through its entrypoint", () => {
    const gpu = { amd64: ["nvml", "rsmi", "oneapi"], arm64: ["nvml", "rsmi"] } as const;
    const query = queryOf(smokeTested(dag.container(), "slurmd", "25.11.2", gpu));
    const exec = query.find((step) => step.operation === "withExec");
    expect(exec?.args?.args).toEqual(["sh", "-c", smokeScript("slurmd", "25.11.2", gpu)]);
    expect(exec?.args?.useEntrypoint).toBeFalsy();
  });

  it("puts report.json, report.md and status in the report directory", () => {
    const report = { ok: false, summary: "x", images: [], errors: [], context: {}, mode: "build-only" } as unknown as Report;
    const files = Object.fromEntries(
      queryOf(reportDirectory({ ...report, context: { branch: "", commitSha: "", defaultBranch: "main", pipelineSource: "push", registry: "", slurmVersion: "25.11", flavor: "ubuntu24.04", group: "core" }, tags: null, promotion: null, schemaVersion: 1, startedAt: "", finishedAt: "", durationMs: 0 }))
        .filter((s) => s.operation === "withNewFile")
        .map((s) => [s.args!.path, s.args!.contents]),
    );
    expect(Object.keys(files).sort()).toEqual(["report.json", "report.md", "status"]);
    expect(files.status).toBe("failed\n");
    expect(JSON.parse(files["report.json"] as string).ok).toBe(false);
  });
});

describe("ci without an engine", () => {
  const module = new SlinkyContainers(dag.directory());
  const CANARY = "canary-never-shown-3f9a";
  const reportOf = (dir: Directory) => {
    const step = queryOf(dir).find((s) => s.operation === "withNewFile" && s.args?.path === "report.json");
    return JSON.parse(step!.args!.contents as string) as Report;
  };

  it("in a merge-request pipeline (no branch): tries to build and test every image, pushes nothing, reports the failures", async () => {
    const dir = await module.ci("", "a1b2c3d4e5f6", "main", "merge_request_event", "registry.example.com/g/p", "u", dag.setSecret("pw", CANARY), "25.11", "ubuntu24.04", "core");
    const report = reportOf(dir);
    expect(report.mode).toBe("build-only");
    expect(report.ok).toBe(false);
    expect(report.images.map((i) => i.image)).toEqual(["slurmctld", "slurmd", "slurmdbd", "slurmrestd", "sackd", "login"]);
    expect(report.images.every((i) => i.built === false && !i.pushed && i.error?.startsWith("build or smoke test failed"))).toBe(true);
    expect(JSON.stringify(queryOf(dir))).not.toContain(CANARY);
  });

  it("refuses a branch run with a bad commit before building anything", async () => {
    await expect(
      module.ci("main", "not-a-sha", "main", "push", "registry.example.com/g/p", "u", dag.setSecret("pw", CANARY), "25.11", "ubuntu24.04", "core"),
    ).rejects.toThrow(/invalid commit sha "not-a-sha": expected 8 to 64 hexadecimal/);
  });

  it("promote fails, carrying the report, when it cannot get at the registry", async () => {
    await expect(
      module.promote("127.0.0.1:9/g/p", "a1b2c3d4e5f6", "u", dag.setSecret("pw", CANARY), "main", "25.11", "ubuntu24.04", "core"),
    ).rejects.toThrow(/slinky-containers run: FAILED/);
  });
});
