/**
 * The provenance (src/supply-chain/provenance.ts): the SLSA v1 predicate of one image, from
 * the manifest's real pins (materials.imageMaterials), checked against the
 * spec's field names (https://slsa.dev/provenance/v1, spec/schema/provenance.cue
 * of slsa-framework/slsa) and for credentials: a canary password is put in
 * every input that could carry one.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type ImageName, imageSpec } from "../../src/core/catalog.js";
import { loadManifest } from "../../src/core/manifest.js";
import { imageMaterials } from "../../src/supply-chain/materials.js";
import { resolve } from "../../src/build/plan.js";
import { anchors, firstCells, section } from "../support/markdown.js";
import {
  BUILD_TYPE,
  PREDICATE_TYPE,
  type ProvenanceArgs,
  ProvenanceError,
  provenanceStatement,
  SlsaProvenanceSchema,
  slsaProvenance,
  StatementSchema,
} from "../../src/supply-chain/provenance.js";

const manifest = loadManifest();
const SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const DIGEST = `sha256:${"ab".repeat(32)}`;
const CANARY = "CANARY-pw-7f3a9e";

function argsFor(image: ImageName = "login-pyxis", platform: "linux/amd64" | "linux/arm64" = "linux/amd64"): ProvenanceArgs {
  const resolved = resolve(manifest, { image, platforms: platform });
  return {
    image,
    digest: DIGEST,
    platform,
    version: "25.11",
    flavor: "ubuntu24.04",
    group: "all",
    registry: "registry.example.com/hpc/slinky",
    builder: { id: "https://gitlab.example.com/hpc/slinky-containers/-/runners", version: "0.1.0" },
    invocation: {
      commit: SHA,
      branch: "main",
      defaultBranch: "main",
      pipelineSource: "push",
      pipelineUrl: "https://gitlab.example.com/hpc/slinky-containers/-/pipelines/42",
      jobUrl: "https://gitlab.example.com/hpc/slinky-containers/-/jobs/4242",
      repository: "https://gitlab.example.com/hpc/slinky-containers",
    },
    materials: imageMaterials(manifest, resolved, imageSpec(image), platform),
    startedOn: "2026-11-29T18:00:00Z",
    finishedOn: "2026-11-29T18:20:00.5+00:00",
  };
}

/** Every field name the SLSA v1 provenance spec defines (its cue summary), by object. */
const SPEC_FIELDS = {
  predicate: ["buildDefinition", "runDetails"],
  buildDefinition: ["buildType", "externalParameters", "internalParameters", "resolvedDependencies"],
  runDetails: ["builder", "metadata", "byproducts"],
  builder: ["id", "builderDependencies", "version"],
  metadata: ["invocationId", "startedOn", "finishedOn"],
  resourceDescriptor: ["uri", "digest", "name", "downloadLocation", "mediaType", "content", "annotations"],
};

const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("expected an error");
};

describe("slsaProvenance", () => {
  const predicate = slsaProvenance(argsFor());

  it("uses only the spec's field names, with the required ones set", () => {
    const keys = (o: object) => Object.keys(o);
    expect(SPEC_FIELDS.predicate).toEqual(expect.arrayContaining(keys(predicate)));
    expect(SPEC_FIELDS.buildDefinition).toEqual(keys(predicate.buildDefinition));
    expect(SPEC_FIELDS.runDetails).toEqual(expect.arrayContaining(keys(predicate.runDetails)));
    expect(SPEC_FIELDS.builder).toEqual(expect.arrayContaining(keys(predicate.runDetails.builder)));
    expect(SPEC_FIELDS.metadata).toEqual(keys(predicate.runDetails.metadata));
    for (const dep of predicate.buildDefinition.resolvedDependencies) {
      expect(SPEC_FIELDS.resourceDescriptor).toEqual(expect.arrayContaining(keys(dep)));
      expect(dep.uri ?? dep.digest).toBeDefined();
    }
    expect(Object.values(predicate.runDetails.builder.version).every((v) => typeof v === "string")).toBe(true);
    expect(SlsaProvenanceSchema.safeParse(predicate).success).toBe(true);
  });

  it("records the builder, the parameters the run was called with, and when", () => {
    expect(predicate.buildDefinition.buildType).toBe(BUILD_TYPE);
    expect(predicate.buildDefinition.externalParameters).toEqual({
      image: "login-pyxis",
      platform: "linux/amd64",
      slurmVersion: "25.11",
      flavor: "ubuntu24.04",
      group: "all",
      registry: "registry.example.com/hpc/slinky",
      branch: "main",
      defaultBranch: "main",
      commitSha: SHA,
      pipelineSource: "push",
      source: "https://gitlab.example.com/hpc/slinky-containers",
    });
    expect(predicate.buildDefinition.internalParameters).toEqual({ target: "login-pyxis", buildsOn: "login", dockerfile: "dockerfiles/debian/Dockerfile" });
    expect(predicate.runDetails).toEqual({
      builder: { id: "https://gitlab.example.com/hpc/slinky-containers/-/runners", version: { "slinky-containers": "0.1.0" } },
      metadata: { invocationId: "https://gitlab.example.com/hpc/slinky-containers/-/jobs/4242", startedOn: "2026-11-29T18:00:00Z", finishedOn: "2026-11-29T18:20:00.500Z" },
    });
  });

  it("resolves every pinned input to its URL and the manifest's sha256, the base image by digest, the source by commit", () => {
    const deps = predicate.buildDefinition.resolvedDependencies;
    const byName = new Map(deps.map((d) => [d.name, d]));
    expect([...byName.keys()]).toEqual(["baseImage", "enroot", "enrootCaps", "kubectl", "nvidiaKey", "nvidiaToolkit", "pyxis", "slurm", "source"]);
    const pins = { slurm: manifest.slurm["25.11"], pyxis: manifest.inputs.pyxis, enroot: manifest.inputs.enroot, enrootCaps: manifest.inputs.enrootCaps, kubectl: manifest.inputs.kubectl };
    for (const [name, pin] of Object.entries(pins)) {
      expect(byName.get(name), name).toMatchObject({ uri: pin?.url, digest: { sha256: pin?.sha256 }, annotations: { version: pin?.version } });
    }
    const baseDigest = manifest.flavors["ubuntu24.04"]?.baseDigest as string;
    expect(byName.get("baseImage")).toMatchObject({
      uri: `pkg:oci/ubuntu@${baseDigest}?repository_url=docker.io%2Flibrary%2Fubuntu&tag=24.04`,
      digest: { sha256: baseDigest.slice(7) },
      annotations: { reference: "docker.io/library/ubuntu:24.04" },
    });
    expect(byName.get("nvidiaKey")).toMatchObject({ uri: manifest.inputs.nvidiaKey.url, annotations: { openpgpFingerprint: manifest.inputs.nvidiaKey.fingerprint, inImage: false } });
    expect(byName.get("nvidiaKey")?.digest).toBeUndefined();
    expect(byName.get("source")).toEqual({
      uri: `git+https://gitlab.example.com/hpc/slinky-containers@${SHA}`,
      digest: { gitCommit: SHA },
      name: "source",
      annotations: { branch: "main" },
    });
  });

  it("takes each platform's pins: linux/arm64's kubectl", () => {
    const arm = slsaProvenance(argsFor("sackd", "linux/arm64"));
    expect(arm.buildDefinition.resolvedDependencies.find((d) => d.name === "kubectl")).toMatchObject({
      uri: manifest.inputs.kubectl.arch?.arm64?.url,
      digest: { sha256: manifest.inputs.kubectl.arch?.arm64?.sha256 },
    });
  });

  it("is deterministic: the same input gives the same bytes, whatever the order of the materials", () => {
    const args = argsFor();
    expect(JSON.stringify(slsaProvenance({ ...args, materials: [...(args.materials ?? [])].reverse() }))).toBe(JSON.stringify(predicate));
  });

  it("outside CI: no invocation id, the manifest's project as the source, a short commit without a digest", () => {
    const local = slsaProvenance({ ...argsFor("slurmctld"), invocation: { commit: "0123abcd" }, registry: undefined, group: undefined });
    expect(local.runDetails.metadata.invocationId).toBeUndefined();
    expect(local.buildDefinition.externalParameters.source).toBe(manifest.project.source);
    expect(local.buildDefinition.resolvedDependencies.find((d) => d.name === "source")).toEqual({ uri: `git+${manifest.project.source}@0123abcd`, name: "source" });
    const noCommit = slsaProvenance({ ...argsFor("slurmctld"), invocation: {} });
    expect(noCommit.buildDefinition.resolvedDependencies.some((d) => d.name === "source")).toBe(false);
  });

  it("says when the image came from the build cache", () => {
    const reused = slsaProvenance({ ...argsFor("slurmd"), cache: { reused: true, entry: "registry.example.com/hpc/slinky/cache/slurmd:k-0123" } });
    expect(reused.buildDefinition.internalParameters.cache).toEqual({ reused: true, entry: "registry.example.com/hpc/slinky/cache/slurmd:k-0123" });
  });

  it("wraps into an in-toto v1 statement whose subject is the image's digest", () => {
    const statement = provenanceStatement(argsFor());
    expect(StatementSchema.safeParse(statement).success).toBe(true);
    expect(statement.predicateType).toBe(PREDICATE_TYPE);
    expect(statement.subject).toEqual([{ name: "registry.example.com/hpc/slinky/login-pyxis", digest: { sha256: "ab".repeat(32) } }]);
  });

  it("refuses bad input, naming the field", () => {
    const args = argsFor("slurmd");
    expect(errorOf(() => slsaProvenance({ ...args, digest: "sha256:abc" }))).toContain("digest: must be sha256:<64 lowercase hex>");
    expect(errorOf(() => slsaProvenance({ ...args, image: "slurmx" as "slurmd" }))).toContain("image");
    expect(errorOf(() => slsaProvenance({ ...args, startedOn: "now" }))).toContain("startedOn");
    expect(errorOf(() => slsaProvenance({ ...args, finishedOn: "2026-11-29T17:00:00Z" }))).toContain("finishedOn 2026-11-29T17:00:00Z is before startedOn");
    expect(errorOf(() => slsaProvenance({ ...args, invocation: { commit: "xyz" } }))).toContain("invocation.commit");
    expect(errorOf(() => slsaProvenance({ ...args, invocation: { branch: "a..b" } }))).toContain("invocation.branch");
    const unchecked = (args.materials ?? []).map((m) => (m.name === "slurm" ? { ...m, sha256: null } : m));
    expect(errorOf(() => slsaProvenance({ ...args, materials: unchecked }))).toContain("material slurm");
    expect(errorOf(() => slsaProvenance({ ...args, materials: [...(args.materials ?? []), ...(args.materials ?? [])] }))).toContain("listed twice");
  });
});

describe("no credential reaches the provenance", () => {
  const args = argsFor("login-pyxis");

  it("drops user:password@, query and fragment from the pipeline, job and repository URLs", () => {
    const predicate = slsaProvenance({
      ...args,
      invocation: {
        ...args.invocation,
        pipelineUrl: `https://ci:${CANARY}@gitlab.example.com/hpc/slinky-containers/-/pipelines/42?token=${CANARY}`,
        jobUrl: `https://gitlab.example.com/hpc/slinky-containers/-/jobs/4242?private_token=${CANARY}#${CANARY}`,
        repository: `https://gitlab-ci-token:${CANARY}@gitlab.example.com/hpc/slinky-containers.git`,
      },
    });
    const json = JSON.stringify(predicate);
    expect(json).not.toContain(CANARY);
    expect(json).not.toContain("gitlab-ci-token");
    expect(predicate.runDetails.metadata.invocationId).toBe("https://gitlab.example.com/hpc/slinky-containers/-/jobs/4242");
    expect(predicate.buildDefinition.externalParameters.source).toBe("https://gitlab.example.com/hpc/slinky-containers.git");
  });

  it.each([
    ["registry", { registry: `user:${CANARY}@registry.example.com/hpc` }],
    ["builder.id", { builder: { id: `https://admin:${CANARY}@gitlab.example.com/runners`, version: "0.1.0" } }],
    ["invocation.branch", { invocation: { branch: `user:${CANARY}@host` } }],
    ["material URL", { materials: (args.materials ?? []).map((m) => (m.name === "slurm" ? { ...m, uri: `https://mirror:${CANARY}@mirror.example/slurm.tar.bz2` } : m)) }],
    ["cache entry", { cache: { reused: true, entry: `user:${CANARY}@registry.example.com/cache:x` } }],
  ])("refuses a credential in %s without echoing it", (_where, patch) => {
    const message = errorOf(() => slsaProvenance({ ...args, ...patch } as ProvenanceArgs));
    expect(message).toMatch(/invalid provenance input|credentials/);
    expect(message).not.toContain(CANARY);
  });
});

describe("the README documents the build type", () => {
  it("BUILD_TYPE is the README's section on the project's documentation URL", () => {
    expect(BUILD_TYPE.startsWith(`${manifest.project.documentation}#`)).toBe(true);
    const readme = readFileSync(join(import.meta.dirname, "..", "..", "README.md"), "utf8");
    const anchor = BUILD_TYPE.slice(BUILD_TYPE.indexOf("#") + 1);
    const headings = readme.split("\n").filter((l) => /^#+ /.test(l)).map((l) => l.replace(/^#+ /, "").toLowerCase().replace(/[^a-z0-9 -]/g, "").replace(/ /g, "-"));
    expect(headings).toContain(anchor);
  });

  it("the README's section links to the page whose section describes every field of the predicate", () => {
    const root = join(import.meta.dirname, "..", "..");
    const readmeSection = section(readFileSync(join(root, "README.md"), "utf8"), "Provenance (build type v1)");
    expect(readmeSection).toContain("(docs/supply-chain.md#provenance-build-type-v1)");
    const page = readFileSync(join(root, "docs", "supply-chain.md"), "utf8");
    expect(anchors(page).has("provenance-build-type-v1")).toBe(true);
    const fields = firstCells(section(page, "Provenance (build type v1)")).map((c) => c.replace(/`/g, ""));
    const predicate = slsaProvenance(argsFor()) as unknown as { buildDefinition: object; runDetails: object };
    const made = [
      ...Object.keys(predicate.buildDefinition).filter((k) => k !== "buildType"),
      ...Object.keys(predicate.runDetails).map((k) => `runDetails.${k}`),
    ];
    expect(made.length).toBeGreaterThan(3);
    expect(fields.sort()).toEqual(made.sort());
  });
});
