/**
 * Predicates to attest in the signing tests: the module's own documents
 * (src/release/pipeline.engine.ts documentsOf: SPDX 2.3 from src/supply-chain/sbom.ts, SLSA v1 from
 * src/supply-chain/provenance.ts) made from REAL dpkg-query output of the harness's images
 * (test/fixtures), the container that would run dpkg-query being a spy that
 * answers with that output (no engine here).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Container } from "@dagger.io/dagger";
import { dag } from "@dagger.io/dagger";
import type { CachedBuild } from "../../src/cache/cachedbuild.engine.js";
import { loadManifest } from "../../src/core/manifest.js";
import { documentsOf, type EngineRun } from "../../src/release/pipeline.engine.js";
import { resolve } from "../../src/build/plan.js";
import type { Predicates } from "../../src/supply-chain/signing.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures");
const OUTPUT: Record<string, string> = {
  "linux/amd64": readFileSync(join(FIXTURES, "dpkg-query.real.slurmctld.24.11-debian13.amd64.txt"), "utf8"),
  "linux/arm64": readFileSync(join(FIXTURES, "dpkg-query.real.base-debian-trixie.arm64.txt"), "utf8"),
};

/** A container whose only answer is dpkg-query's output; records what it was asked to run. */
export function dpkgSpy(stdout: string, calls: string[][] = []): Container {
  const spy = {
    withUser: () => spy,
    withExec: (args: string[]) => {
      calls.push(args);
      return spy;
    },
    stdout: async () => stdout,
  };
  return spy as unknown as Container;
}

const manifest = loadManifest();

/** The run the documents describe (a debian13 build of branch main, as the fixtures are). */
export function documentsRun(registry: string): EngineRun {
  return {
    dockerfiles: dag.directory(),
    manifest,
    slurmVersion: "25.11",
    flavor: "debian13",
    group: "core",
    registry,
    branch: "main",
    commitSha: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    commitTimestamp: "2026-11-29T18:00:00Z",
    defaultBranch: "main",
    pipelineSource: "push",
    username: "gitlab-ci-token",
    password: undefined as never,
    pipelineUrl: "https://gitlab.example.com/hpc/slinky-containers/-/pipelines/4242",
    jobUrl: "https://gitlab.example.com/hpc/slinky-containers/-/jobs/777",
  };
}

/** The module's documents for an image's digest (platform null: the image, or an index). */
export function moduleDocuments(registry: string, platforms: string[] = ["linux/amd64"], calls: string[][] = [], overrides: Partial<EngineRun> = {}) {
  const run = { ...documentsRun(registry), ...overrides };
  const resolved = resolve(manifest, { slurmVersion: "25.11", flavor: "debian13", group: "core", platforms: platforms.join(",") });
  const cached = { plan: null, options: null, packages: null, disabled: "off", warnings: [] } as unknown as CachedBuild;
  return documentsOf(run, resolved, cached, async (_image, platform) => dpkgSpy(OUTPUT[platform] ?? "", calls), "2026-11-29T18:00:00Z");
}

/** Small fixed documents (for tests about signing alone). */
export function standInPredicates(image: string, digest: string): Predicates {
  return {
    spdxjson: { spdxVersion: "SPDX-2.3", dataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT", name: image, documentNamespace: `https://slinky.invalid/spdx/${image}/${digest}` },
    slsaprovenance1: {
      buildDefinition: { buildType: "https://slinky.invalid/build/v1", externalParameters: { image }, internalParameters: {}, resolvedDependencies: [] },
      runDetails: { builder: { id: "https://slinky.invalid/builder" } },
    },
  };
}
