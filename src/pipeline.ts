/**
 * The engine side of publish, promote and ci: wires Dagger containers (build,
 * smoke test, push with registry auth) into the plain functions of
 * release.ts, and turns the report into a directory. The password is a Dagger
 * Secret: the engine gets it by reference for pushes (withRegistryAuth); its
 * plaintext is read only in memory, for the registry client that copies tags.
 */
import { type Container, dag, type Directory, type Secret } from "@dagger.io/dagger";
import { imageContainer } from "./build.js";
import type { ImageSpec } from "./catalog.js";
import { createLogger } from "./log.js";
import type { Manifest } from "./manifest.js";
import { type Resolved, requireChecksums, resolve } from "./plan.js";
import { parseRef, RegistryClient } from "./registry.js";
import { runCi } from "./release.js";
import { renderJson, renderMarkdown, type Report } from "./report.js";
import { smokeScript } from "./smoke.js";

export interface EngineRun {
  dockerfiles: Directory;
  manifest: Manifest;
  slurmVersion: string;
  flavor: string;
  group: string;
  /** Registry path, e.g. registry.gitlab.com/group/project (CI_REGISTRY_IMAGE). */
  registry: string;
  /** Empty in merge-request and tag pipelines: then nothing is pushed. */
  branch: string;
  commitSha: string;
  /** The commit's time (RFC 3339): the images' created label, the same on every re-run. */
  commitTimestamp?: string;
  defaultBranch: string;
  pipelineSource: string;
  username: string;
  password: Secret;
}

export interface Stages {
  /** Build and smoke-test every image first. */
  check: boolean;
  /** "build": push the built images; "adopt": take the digests already under the commit tag. */
  push: "build" | "adopt";
  promote: boolean;
}

/** The registry host of a registry path (what withRegistryAuth wants). */
export function registryHost(registry: string): string {
  return parseRef(`${registry.replace(/\/+$/, "")}/probe`).registry;
}

/** The image with its smoke-check script run in it (entrypoint not used). */
export function smokeTested(container: Container, image: string, slurmVersion: string): Container {
  return container.withExec(["sh", "-c", smokeScript(image, slurmVersion)]);
}

/** The image, ready to publish with the registry credentials. */
export function publishable(container: Container, registry: string, username: string, password: Secret): Container {
  return container.withRegistryAuth(registryHost(registry), username, password);
}

/** Run the stages against the engine and return the report (never throws for a failed image). */
export async function engineRun(run: EngineRun, stages: Stages): Promise<Report> {
  const resolved: Resolved = resolve(run.manifest, { slurmVersion: run.slurmVersion, flavor: run.flavor, group: run.group });
  if (stages.push === "build") requireChecksums(run.manifest, resolved);
  const spec = (name: string) => resolved.images.find((i) => i.name === name) as ImageSpec;
  const container = (name: string) =>
    imageContainer(run.dockerfiles, run.manifest, resolved, spec(name), {
      provenance: { revision: run.commitSha, created: run.commitTimestamp },
    });
  const log = createLogger();
  let client: Promise<RegistryClient> | undefined;
  const getClient = () => {
    client ??= run.password
      .plaintext()
      .then((password) => new RegistryClient({ username: run.username, password, logger: log }));
    return client;
  };
  return runCi({
    context: {
      branch: run.branch,
      commitSha: run.commitSha,
      defaultBranch: run.defaultBranch,
      pipelineSource: run.pipelineSource,
      registry: run.registry,
      slurmVersion: run.slurmVersion,
      flavor: run.flavor,
      group: run.group,
    },
    line: resolved.line,
    images: resolved.images.map((i) => i.name),
    ...(stages.check
      ? {
          check: async (image: string) => {
            await smokeTested(container(image), image, resolved.slurm.version).sync();
          },
        }
      : {}),
    push:
      stages.push === "build"
        ? (image, ref) => publishable(container(image), run.registry, run.username, run.password).publish(ref)
        : async (_image, ref) => `${ref}@${(await (await getClient()).getManifest(ref)).digest}`,
    client: getClient,
    promote: stages.promote,
    moveBranchLatest: stages.push === "build",
    log,
  });
}

/** report.json, report.md and status ("passed" or "failed") in a directory. */
export function reportDirectory(report: Report): Directory {
  return dag
    .directory()
    .withNewFile("report.json", renderJson(report))
    .withNewFile("report.md", renderMarkdown(report))
    .withNewFile("status", report.ok ? "passed\n" : "failed\n");
}

/** The report's Markdown, or an error carrying it when the run failed (non-zero exit on the CLI). */
export function outcome(report: Report): string {
  const text = renderMarkdown(report);
  if (!report.ok) throw new Error(text);
  return text;
}
