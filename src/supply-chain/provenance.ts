/**
 * The provenance of one image: the SLSA v1 predicate
 * (https://slsa.dev/provenance/v1) saying who built it (this module, its
 * version), from what (the commit, the pinned inputs and the base image by
 * digest: resolvedDependencies), with which parameters (version, flavor,
 * group, image, platform, registry, branch, commit) and when. Pure: the
 * caller (publish/ci) passes what it knows; nothing here reads the
 * environment.
 *
 * No credential can reach the document: URLs lose their `user:password@`
 * (GitLab's CI_REPOSITORY_URL carries the job token that way), their query
 * and fragment; every other field is validated by the same rules as the
 * module's inputs (a registry or branch with credentials is refused); and
 * the finished document is scanned once more before it is returned.
 */
import { z } from "zod";
import { GROUP_NAMES, IMAGE_NAMES, imageSpec } from "../core/catalog.js";
import { redactCredentials, shown } from "../core/errors.js";
import { checkField, type FieldName, referenceProblem, noTrailingSlash } from "../core/inputs.js";
import { loadManifest } from "../core/manifest.js";
import { type Material, MODULE_NAME } from "./materials.js";
import { PLATFORM_NAMES } from "../core/platform.js";
import { ociPurl } from "./purl.js";

export const PREDICATE_TYPE = "https://slsa.dev/provenance/v1";
export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
/** The build this module runs, documented in the README's "Provenance (build type v1)" section. */
export const BUILD_TYPE = "https://gitlab.com/crusoeenergy/island/external/slinky-containers/-/blob/main/README.md#provenance-build-type-v1";

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** in-toto's Timestamp: RFC 3339 in UTC. */
const UTC_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

// ---- the schema of what slsaProvenance emits ---------------------------------

const DigestSetSchema = z.record(z.string().regex(/^[a-zA-Z0-9_]+$/), z.string().regex(/^[0-9a-f]+$/, "lowercase hex"));

/** in-toto's ResourceDescriptor: at least one of uri, digest, content. */
export const ResourceDescriptorSchema = z
  .strictObject({
    uri: z.string().min(1).optional(),
    digest: DigestSetSchema.optional(),
    name: z.string().min(1).optional(),
    downloadLocation: z.string().optional(),
    mediaType: z.string().optional(),
    annotations: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((r) => r.uri !== undefined || r.digest !== undefined, "a resource needs a uri or a digest");
export type ResourceDescriptor = z.infer<typeof ResourceDescriptorSchema>;

/** The SLSA v1 provenance predicate as this module writes it. */
export const SlsaProvenanceSchema = z.strictObject({
  buildDefinition: z.strictObject({
    buildType: z.url(),
    externalParameters: z.strictObject({
      image: z.enum(IMAGE_NAMES),
      platform: z.enum(PLATFORM_NAMES),
      slurmVersion: z.string().min(1),
      flavor: z.string().min(1),
      group: z.enum(GROUP_NAMES).optional(),
      registry: z.string().optional(),
      branch: z.string().optional(),
      defaultBranch: z.string().optional(),
      commitSha: z.string().optional(),
      pipelineSource: z.string().optional(),
      source: z.string().optional(),
      siteManifest: z.strictObject({ sha256: z.string().regex(SHA256_HEX) }).optional(),
    }),
    internalParameters: z.strictObject({
      target: z.string().min(1),
      buildsOn: z.string().nullable(),
      dockerfile: z.string().min(1),
      cache: z.strictObject({ reused: z.boolean(), entry: z.string().optional() }).optional(),
    }),
    resolvedDependencies: z.array(ResourceDescriptorSchema).min(1),
  }),
  runDetails: z.strictObject({
    builder: z.strictObject({ id: z.url(), version: z.record(z.string(), z.string()) }),
    metadata: z.strictObject({
      invocationId: z.string().min(1).optional(),
      startedOn: z.string().regex(UTC_TIME),
      finishedOn: z.string().regex(UTC_TIME),
    }),
  }),
});
export type SlsaProvenance = z.infer<typeof SlsaProvenanceSchema>;

export const StatementSchema = z.strictObject({
  _type: z.literal(STATEMENT_TYPE),
  subject: z.array(z.strictObject({ name: z.string().min(1), digest: z.strictObject({ sha256: z.string().regex(SHA256_HEX) }) })).length(1),
  predicateType: z.literal(PREDICATE_TYPE),
  predicate: SlsaProvenanceSchema,
});
export type Statement = z.infer<typeof StatementSchema>;

// ---- input -----------------------------------------------------------------

export class ProvenanceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProvenanceError";
  }
}

/** A field checked by the module's own input rules (core/inputs.ts), so the error reads the same. */
const field = (name: FieldName) =>
  z.string().superRefine((value, ctx) => {
    const error = checkField(name, value);
    if (error) ctx.addIssue({ code: "custom", message: error.message });
  });

/** An http(s) URL; credentials are taken out later (cleanUrl), never echoed. */
const url = z.string().superRefine((value, ctx) => {
  try {
    const parsed = new URL(value);
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") ctx.addIssue({ code: "custom", message: "must be an http(s) URL" });
  } catch {
    ctx.addIssue({ code: "custom", message: `${shown(value)} is not a URL` });
  }
});

const MaterialSchema = z.strictObject({
  name: z.string().min(1),
  version: z.string().min(1),
  uri: z.string().min(1),
  sha256: z.string().regex(SHA256_HEX).nullable(),
  fingerprint: z.string().regex(/^[0-9A-F]{40}$/).optional(),
  kind: z.enum(["download", "apt-repository", "image"]),
  inImage: z.boolean(),
});

const time = field("commitTimestamp");

export const ProvenanceArgsSchema = z.strictObject({
  image: z.enum(IMAGE_NAMES),
  /** The image's manifest digest: the attestation's subject. */
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be sha256:<64 lowercase hex>"),
  platform: z.enum(PLATFORM_NAMES),
  /** The Slurm version asked for (a release line or its patch release). */
  version: z.string().regex(/^[0-9][0-9A-Za-z.+~-]*$/),
  flavor: z.string().regex(/^[a-z0-9][a-z0-9.]*$/),
  group: z.enum(GROUP_NAMES).optional(),
  /** Where the image is pushed (host[:port]/path): refused with credentials, as every entry point refuses it. */
  registry: field("registry").optional(),
  builder: z.strictObject({
    /** A URI naming the build platform, e.g. the GitLab project's runners or a laptop. */
    id: url,
    /** This module's version, or a map of component to version (SLSA's builder.version). */
    version: z.union([z.string().min(1), z.record(z.string().min(1), z.string().min(1))]),
  }),
  invocation: z.strictObject({
    commit: field("commitSha").optional(),
    branch: field("branch").optional(),
    defaultBranch: field("defaultBranch").optional(),
    pipelineSource: field("pipelineSource").optional(),
    /** CI_PIPELINE_URL / CI_JOB_URL: the invocation id (credentials, query and fragment dropped). */
    pipelineUrl: url.optional(),
    jobUrl: url.optional(),
    /** The git repository's URL (CI_PROJECT_URL or CI_REPOSITORY_URL); default manifest.json's project.source. */
    repository: url.optional(),
  }),
  /** imageMaterials(): every pinned input the build fetched and the base image. */
  materials: z.array(MaterialSchema).min(1),
  /** The sha256 of the site manifest laid over manifest.json, when one was. */
  siteManifestSha256: z.string().regex(SHA256_HEX).optional(),
  /** Whether the image was reused from the build cache (then it was built by an earlier run), and from which entry. */
  cache: z
    .strictObject({
      reused: z.boolean(),
      /** The cache entry's image reference (host/path:tag or @digest). */
      entry: z.string().refine((value) => referenceProblem(value) === null, "must be an image reference (host/path[:tag][@digest]) without credentials").optional(),
    })
    .optional(),
  /** The flavor's family: dockerfiles/<family>/Dockerfile. */
  family: z.enum(["debian"]).default("debian"),
  startedOn: time,
  finishedOn: time,
});
export type ProvenanceArgs = z.input<typeof ProvenanceArgsSchema>;

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A URL without `user:password@`, query or fragment. */
export function cleanUrl(value: string): string {
  const parsed = new URL(value);
  parsed.username = "";
  parsed.password = "";
  parsed.search = "";
  parsed.hash = "";
  return parsed.toString();
}

/** RFC 3339 in UTC, milliseconds only when there are any. */
const utc = (value: string) => new Date(value).toISOString().replace(/\.000Z$/, "Z");

/** A material as a SLSA ResourceDescriptor: the URL (or the image's purl) and its sha256, with its version. */
function dependencyOf(material: z.infer<typeof MaterialSchema>): ResourceDescriptor {
  if (material.kind === "download" && material.sha256 === null && !material.fingerprint) {
    throw new ProvenanceError(`material ${material.name} (${shown(material.uri)}) has neither a sha256 nor a fingerprint: an unchecked download cannot be in a build`);
  }
  if (material.kind !== "image" && redactCredentials(material.uri) !== material.uri) {
    throw new ProvenanceError(`material ${material.name}'s URL holds credentials: ${shown(material.uri)}`);
  }
  const uri = material.kind === "image" ? ociPurl(material.uri, material.sha256 ? `sha256:${material.sha256}` : null) : material.uri;
  return {
    uri,
    ...(material.sha256 ? { digest: { sha256: material.sha256 } } : {}),
    name: material.name,
    annotations: {
      version: material.version,
      ...(material.fingerprint ? { openpgpFingerprint: material.fingerprint } : {}),
      ...(material.kind === "image" ? { reference: material.uri } : {}),
      inImage: material.inImage,
    },
  };
}

let pinnedSource: string | undefined;
const projectSource = () => (pinnedSource ??= loadManifest().project.source);

/** What no document may hold: a URL with userinfo. */
const CREDENTIAL_IN_URL = /[a-z][a-z0-9+.-]*:\/\/[^\s/?#@"]*@/i;

/**
 * The SLSA v1 provenance predicate of one image. Refuses bad input naming
 * the field (never echoing a credential), and checks its own output against
 * SlsaProvenanceSchema. Dependencies are sorted by name, then uri.
 */
export function slsaProvenance(input: ProvenanceArgs): SlsaProvenance {
  const parsed = ProvenanceArgsSchema.safeParse(input);
  if (!parsed.success) {
    throw new ProvenanceError(`invalid provenance input:\n${parsed.error.issues.map((issue) => `  ${issue.path.join(".") || "(root)"}: ${redactCredentials(issue.message)}`).join("\n")}`);
  }
  const args = parsed.data;
  const { invocation } = args;
  const started = new Date(args.startedOn).getTime();
  const finished = new Date(args.finishedOn).getTime();
  if (finished < started) throw new ProvenanceError(`invalid provenance input: finishedOn ${args.finishedOn} is before startedOn ${args.startedOn}`);
  if (redactCredentials(args.builder.id) !== args.builder.id || new URL(args.builder.id).username !== "") {
    throw new ProvenanceError("invalid provenance input: builder.id holds credentials");
  }
  const spec = imageSpec(args.image);
  const repository = noTrailingSlash(cleanUrl(invocation.repository ?? projectSource()));
  const source: ResourceDescriptor[] = invocation.commit
    ? [
        {
          uri: `git+${repository}@${invocation.commit.toLowerCase()}`,
          ...(/^([0-9a-f]{40}|[0-9a-f]{64})$/i.test(invocation.commit) ? { digest: { gitCommit: invocation.commit.toLowerCase() } } : {}),
          name: "source",
          ...(invocation.branch ? { annotations: { branch: invocation.branch } } : {}),
        },
      ]
    : [];
  const names = new Set<string>();
  for (const material of args.materials) {
    if (names.has(material.name)) throw new ProvenanceError(`invalid provenance input: material ${material.name} is listed twice`);
    names.add(material.name);
  }
  const dependencies = [...source, ...args.materials.map(dependencyOf)].sort(
    (a, b) => compare(a.name ?? "", b.name ?? "") || compare(a.uri ?? "", b.uri ?? ""),
  );
  const invocationUrl = invocation.jobUrl ?? invocation.pipelineUrl;
  const version = typeof args.builder.version === "string" ? { [MODULE_NAME]: args.builder.version } : args.builder.version;
  const predicate: SlsaProvenance = {
    buildDefinition: {
      buildType: BUILD_TYPE,
      externalParameters: {
        image: args.image,
        platform: args.platform,
        slurmVersion: args.version,
        flavor: args.flavor,
        ...(args.group ? { group: args.group } : {}),
        ...(args.registry ? { registry: noTrailingSlash(args.registry) } : {}),
        ...(invocation.branch ? { branch: invocation.branch } : {}),
        ...(invocation.defaultBranch ? { defaultBranch: invocation.defaultBranch } : {}),
        ...(invocation.commit ? { commitSha: invocation.commit.toLowerCase() } : {}),
        ...(invocation.pipelineSource ? { pipelineSource: invocation.pipelineSource } : {}),
        source: repository,
        ...(args.siteManifestSha256 ? { siteManifest: { sha256: args.siteManifestSha256 } } : {}),
      },
      internalParameters: {
        target: spec.target,
        buildsOn: spec.buildsOn,
        dockerfile: `dockerfiles/${args.family}/Dockerfile`,
        ...(args.cache ? { cache: args.cache } : {}),
      },
      resolvedDependencies: dependencies,
    },
    runDetails: {
      builder: { id: cleanUrl(args.builder.id), version },
      metadata: {
        ...(invocationUrl ? { invocationId: cleanUrl(invocationUrl) } : {}),
        startedOn: utc(args.startedOn),
        finishedOn: utc(args.finishedOn),
      },
    },
  };
  const checked = SlsaProvenanceSchema.safeParse(predicate);
  if (!checked.success) throw new ProvenanceError(`the provenance fails its own schema (a bug): ${checked.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  if (CREDENTIAL_IN_URL.test(JSON.stringify(predicate))) throw new ProvenanceError("the provenance would hold a URL with credentials (a bug): refusing to write it");
  return predicate;
}

/**
 * The whole in-toto v1 statement (what `cosign attest --type slsaprovenance1`
 * wraps the predicate in): subject = the image's reference without tag and
 * its digest.
 */
export function provenanceStatement(input: ProvenanceArgs): Statement {
  const predicate = slsaProvenance(input);
  const registry = predicate.buildDefinition.externalParameters.registry;
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name: registry ? `${registry}/${input.image}` : input.image, digest: { sha256: input.digest.slice("sha256:".length) } }],
    predicateType: PREDICATE_TYPE,
    predicate,
  };
}
