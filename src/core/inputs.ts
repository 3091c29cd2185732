/**
 * One validation for every entry point. `plan`, `build`, `build-all`, `test`,
 * `publish`, `promote` and `ci` pass their user inputs through the same zod
 * schemas here before anything is built or requested. An error names the
 * field, shows the value shortened to 200 characters with any credential
 * (`user:pass@`) redacted, and lists the valid values.
 */
import { z } from "zod";
import { GROUP_NAMES, IMAGE_NAMES } from "./catalog.js";
import { InvalidInputError, InvalidInputsError } from "./errors.js";
import { isPlatform, PLATFORM_NAMES, type PlatformName, splitPlatforms } from "./platform.js";
import { GITLAB_ISSUER, PUBLIC_FULCIO, PUBLIC_REKOR, SIGNING_MODES } from "../supply-chain/signing.js";
import { TAG_PATTERN } from "./tags.js";

/** A path, registry path or URL without its trailing "/"s (the one rule for them all). */
export const noTrailingSlash = (path: string): string => path.replace(/\/+$/, "");


export { InvalidInputError, InvalidInputsError, redactCredentials, shown } from "./errors.js";

// ---- field schemas ---------------------------------------------------------

/** Invisible or control characters: C0/C1 controls, format characters (bidi, zero width), separators. */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const SPACE = /\s|\p{Zs}/u;

interface Rule {
  /** What a user may give, for the error. */
  valid: readonly string[];
  schema: z.ZodType<string>;
}

const fail = (ctx: z.RefinementCtx, message: string) => ctx.addIssue({ code: "custom", message });

/** Shared first checks for every free-form string field. */
function plain(ctx: z.RefinementCtx, value: string, max: number): boolean {
  if (value.length === 0) return fail(ctx, "it is empty"), false;
  if (value.length > max) return fail(ctx, `it is longer than ${max} characters`), false;
  if (INVISIBLE.test(value)) return fail(ctx, "it holds a control or invisible character"), false;
  if (SPACE.test(value)) return fail(ctx, "it holds whitespace"), false;
  return true;
}

const DOMAIN_COMPONENT = "(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])";
const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const HOST_RE = new RegExp(`^${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*$`);
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);

/** A registry path: host[:port]/path, lowercase, no scheme, credentials, tag or digest. */
export const RegistryPath = z.string().superRefine((value, ctx) => {
  if (!plain(ctx, value, 255)) return;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return fail(ctx, "leave out the scheme (https://)");
  if (value.includes("@")) {
    return fail(ctx, value.indexOf("@") < (value.indexOf("/") >>> 0) ? "it holds credentials: pass --username and --password instead" : "it holds a digest");
  }
  const trimmed = noTrailingSlash(value);
  const slash = trimmed.indexOf("/");
  const hostPort = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const path = slash < 0 ? "" : trimmed.slice(slash + 1);
  const [host = "", port, ...more] = hostPort.split(":");
  if (more.length > 0) return fail(ctx, "the host has more than one ':'");
  if (!HOST_RE.test(host)) return fail(ctx, `${JSON.stringify(host)} is not a lowercase host name`);
  if (!host.includes(".") && port === undefined && host !== "localhost") {
    return fail(ctx, `it starts with ${JSON.stringify(host)}, not a registry host (a host has a '.' or a ':port', or is localhost)`);
  }
  if (port !== undefined && (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    return fail(ctx, `port ${JSON.stringify(port)} is not 1 to 65535`);
  }
  if (path === "") return;
  if (/:[^/]*$/.test(path)) return fail(ctx, "it holds a tag: give the path only, the module sets the tags");
  if (!PATH_RE.test(path)) return fail(ctx, "the path must be lowercase letters and digits, separated by '/', '.', '_', '__' or '-'");
  if (trimmed.length + 1 + 13 > 255) return fail(ctx, "it is too long for an image name (255 characters with the image)");
});

/** A git branch name (as git check-ref-format accepts), with a non-empty GitLab slug. */
export const Branch = z.string().superRefine((value, ctx) => {
  if (!plain(ctx, value, 255)) return;
  if (/[~^:?*[\\]/.test(value)) return fail(ctx, "git refuses the characters ~ ^ : ? * [ \\ in a branch");
  if (value.includes("..") || value.includes("@{") || value.includes("//")) return fail(ctx, "git refuses '..', '@{' and '//' in a branch");
  if (/^[/.-]|[/.]$|\.lock$|\/\./.test(value) || value === "@") return fail(ctx, "git refuses this branch name (leading '-', '.' or '/', trailing '.' or '/', '.lock')");
  if (!/[A-Za-z0-9]/.test(value)) return fail(ctx, "it needs at least one ASCII letter or digit (its GitLab slug would be empty)");
});

/** A commit id: 8 to 64 hexadecimal characters. */
export const CommitSha = z.string().superRefine((value, ctx) => {
  if (!/^[0-9a-fA-F]{8,64}$/.test(value)) fail(ctx, "expected 8 to 64 hexadecimal characters (a git commit id)");
});

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-](\d{2}):(\d{2}))$/;

/** An RFC 3339 date-time, e.g. 2026-11-28T00:00:00Z or 2026-11-28T01:00:00+01:00. */
export const CommitTimestamp = z.string().superRefine((value, ctx) => {
  const m = RFC3339.exec(value);
  if (!m) return fail(ctx, "not an RFC 3339 date-time");
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  const days = new Date(Date.UTC(y as number, mo as number, 0)).getUTCDate();
  const offH = m[9] === undefined ? 0 : Number(m[9]);
  const offM = m[10] === undefined ? 0 : Number(m[10]);
  if ((mo as number) < 1 || (mo as number) > 12 || (d as number) < 1 || (d as number) > days || (h as number) > 23 || (mi as number) > 59 || (s as number) > 60 || offH > 23 || offM > 59) {
    fail(ctx, "not a real date and time");
  }
});

/** GitLab's CI_PIPELINE_SOURCE: a lowercase word. */
export const PipelineSource = z.string().superRefine((value, ctx) => {
  if (!/^[a-z][a-z_]{0,63}$/.test(value)) fail(ctx, "expected a lowercase word such as push, web, schedule or merge_request_event");
});

/** A registry user name: no whitespace or control characters. */
export const Username = z.string().superRefine((value, ctx) => {
  plain(ctx, value, 255);
});

/** A name looked up in a fixed list (group, image): never an inherited property. */
const oneOf = (names: readonly string[]) =>
  z.string().superRefine((value, ctx) => {
    if (!names.includes(value)) fail(ctx, "unknown");
  });

/** A comma-separated list of platforms, e.g. linux/amd64,linux/arm64: each known, each once. */
export const PlatformList = z.string().superRefine((value, ctx) => {
  if (value.trim() === "") return fail(ctx, "it is empty");
  const seen = new Set<string>();
  for (const entry of splitPlatforms(value)) {
    if (entry === "") return fail(ctx, "it has an empty entry (two commas, or a comma at an end)");
    if (!isPlatform(entry)) return fail(ctx, `${JSON.stringify(entry)} is not a platform`);
    if (seen.has(entry)) return fail(ctx, `${entry} is given twice`);
    seen.add(entry);
  }
});

/** An http(s) URL of a service (Fulcio, Rekor, an OIDC issuer): no credentials, query or fragment. */
export const ServiceUrl = z.string().superRefine((value, ctx) => {
  if (!plain(ctx, value, 512)) return;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(ctx, "not a URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return fail(ctx, "must be an http:// or https:// URL");
  if (url.username !== "" || url.password !== "") return fail(ctx, "it holds credentials (user:password@): the service must not need them in its URL");
  if (url.search !== "" || url.hash !== "") return fail(ctx, "it holds a query or fragment");
});

/** A Rekor URL, or "off" (key-based signing without a transparency log). */
export const RekorSwitch = z.string().superRefine((value, ctx) => {
  if (value === "off") return;
  const r = ServiceUrl.safeParse(value);
  if (!r.success) fail(ctx, r.error.issues[0]?.message ?? "invalid");
});

/** A certificate identity (the signer's SAN: a GitLab job's is a URL), no whitespace. */
export const CertificateIdentity = z.string().superRefine((value, ctx) => {
  plain(ctx, value, 1024);
});

/** An image reference to verify: host/path[:tag][@digest]. */
export const ImageReference = z.string().superRefine((value, ctx) => {
  const why = referenceProblem(value);
  if (why) return fail(ctx, why);
  if (!/^[^/]+[.:][^/]*\/|^localhost[:/]/.test(value)) fail(ctx, "name the registry host (host/path:tag or host/path@sha256:...)");
});

export const FIELDS = {
  registry: { valid: ["a lowercase registry host[:port]/path with no scheme, credentials, tag or digest, e.g. registry.gitlab.com/group/project"], schema: RegistryPath },
  branch: { valid: ["a git branch name, e.g. main or feature/xyz"], schema: Branch },
  defaultBranch: { valid: ["a git branch name, e.g. main"], schema: Branch },
  commitSha: { valid: ["8 to 64 hexadecimal characters, e.g. the output of git rev-parse HEAD"], schema: CommitSha },
  commitTimestamp: { valid: ["an RFC 3339 date-time, e.g. 2026-11-28T00:00:00Z ($CI_COMMIT_TIMESTAMP)"], schema: CommitTimestamp },
  pipelineSource: { valid: ["push", "web", "schedule", "api", "trigger", "merge_request_event", "... (GitLab's $CI_PIPELINE_SOURCE)"], schema: PipelineSource },
  username: { valid: ["a registry user name without whitespace, e.g. $CI_REGISTRY_USER"], schema: Username },
  group: { valid: GROUP_NAMES, schema: oneOf(GROUP_NAMES) },
  image: { valid: IMAGE_NAMES, schema: oneOf(IMAGE_NAMES) },
  cacheRegistry: {
    valid: ["a lowercase registry host[:port]/path with no scheme, credentials, tag or digest, e.g. registry.gitlab.com/group/project/cache"],
    schema: RegistryPath,
  },
  cacheUsername: { valid: ["a registry user name without whitespace"], schema: Username },
  buildCache: { valid: ["on", "off"], schema: oneOf(["on", "off"]) },
  platform: { valid: PLATFORM_NAMES, schema: oneOf(PLATFORM_NAMES) },
  platforms: { valid: [...PLATFORM_NAMES, `a comma-separated list of them, each once, e.g. ${PLATFORM_NAMES.join(",")}`], schema: PlatformList },
  signing: { valid: SIGNING_MODES, schema: oneOf(SIGNING_MODES) },
  fulcioUrl: { valid: [`an http(s) URL of a Fulcio, e.g. ${PUBLIC_FULCIO} (the default)`], schema: ServiceUrl },
  rekorUrl: { valid: [`an http(s) URL of a Rekor, e.g. ${PUBLIC_REKOR}`, "off (key-based signing only: no transparency log)"], schema: RekorSwitch },
  certificateIdentity: {
    valid: ["the signer's certificate identity, e.g. https://gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main"],
    schema: CertificateIdentity,
  },
  certificateOidcIssuer: { valid: [`the OIDC issuer URL, e.g. ${GITLAB_ISSUER} (self-managed GitLab: $CI_SERVER_URL)`], schema: ServiceUrl },
  pipelineUrl: { valid: ["the pipeline's URL, e.g. $CI_PIPELINE_URL"], schema: ServiceUrl },
  jobUrl: { valid: ["the job's URL, e.g. $CI_JOB_URL"], schema: ServiceUrl },
  reference: { valid: ["an image reference with its registry host, e.g. registry.gitlab.com/group/project/slurmd:25.11-ubuntu24.04-latest or …/slurmd@sha256:<64 hex>"], schema: ImageReference },
} as const satisfies Record<string, Rule>;

export type FieldName = keyof typeof FIELDS;

/** How errors name each field. */
const LABELS: Record<FieldName | "slurmVersion" | "flavor", string> = {
  registry: "registry",
  branch: "branch",
  defaultBranch: "default branch",
  commitSha: "commit sha",
  commitTimestamp: "commit timestamp",
  pipelineSource: "pipeline source",
  username: "username",
  group: "group",
  image: "image",
  cacheRegistry: "cache registry",
  cacheUsername: "cache username",
  buildCache: "build cache switch",
  platform: "platform",
  platforms: "platforms",
  signing: "signing",
  fulcioUrl: "Fulcio URL",
  rekorUrl: "Rekor URL",
  certificateIdentity: "certificate identity",
  certificateOidcIssuer: "certificate OIDC issuer",
  reference: "reference",
  pipelineUrl: "pipeline URL",
  jobUrl: "job URL",
  slurmVersion: "Slurm version",
  flavor: "flavor",
};

export type Inputs = Partial<Record<FieldName, string | undefined>> & {
  slurmVersion?: string | undefined;
  flavor?: string | undefined;
};

/** The error for one field, or null when the value is valid. */
export function checkField(field: FieldName, value: unknown): InvalidInputError | null {
  const rule: Rule = FIELDS[field];
  if (typeof value !== "string") return new InvalidInputError(LABELS[field], value, rule.valid, "not a string");
  const result = rule.schema.safeParse(value);
  if (result.success) return null;
  const why = result.error.issues[0]?.message ?? "invalid";
  return why === "unknown" ? new InvalidInputError(LABELS[field], value, rule.valid) : new InvalidInputError(LABELS[field], value, rule.valid, why);
}

/**
 * Checks every given input (undefined: not given; "" where a field may be
 * empty, see `optional`). Throws one error listing every bad field.
 */
export function checkInputs(inputs: Inputs, optional: readonly FieldName[] = [], more: readonly InvalidInputError[] = []): void {
  const errors: InvalidInputError[] = [];
  for (const [field, value] of Object.entries(inputs) as [string, unknown][]) {
    if (value === undefined) continue;
    if (field === "slurmVersion" || field === "flavor") {
      const error = checkName(LABELS[field], value);
      if (error) errors.push(error);
      continue;
    }
    if (!Object.hasOwn(FIELDS, field)) throw new Error(`checkInputs: no rule for ${field}`);
    if (value === "" && optional.includes(field as FieldName)) continue;
    const error = checkField(field as FieldName, value);
    if (error) errors.push(error);
  }
  errors.push(...more);
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new InvalidInputsError(errors);
}

/**
 * What a signing mode needs besides its own fields: key-based a private key
 * and its password, keyless an OIDC token and what keyless verification
 * needs (keylessVerifierProblems). The secrets are only looked at for being
 * given: their values are never read or shown. Errors name the missing
 * argument and how to give it.
 */
export function signingProblems(inputs: {
  signing?: string;
  signingKey?: unknown;
  signingPassword?: unknown;
  oidcToken?: unknown;
  rekorUrl?: string;
  certificateIdentity?: string;
  certificateOidcIssuer?: string;
}): InvalidInputError[] {
  const mode = inputs.signing ?? "off";
  const problems: InvalidInputError[] = [];
  if (mode === "key") {
    if (!inputs.signingKey) problems.push(missing("signing key", "a cosign private key as a Secret, e.g. --signing-key file:cosign.key (GitLab: a File variable)", "key-based signing needs the private key"));
    if (!inputs.signingPassword) problems.push(missing("signing password", "the key's password as a Secret, e.g. --signing-password env:COSIGN_PASSWORD", "key-based signing needs the key's password"));
  }
  if (mode === "keyless") {
    if (!inputs.oidcToken) problems.push(missing("OIDC token", "the job's id_token (aud sigstore) as a Secret, e.g. --oidc-token env:SIGSTORE_ID_TOKEN", "keyless signing needs an OIDC identity token"));
    problems.push(...keylessVerifierProblems(inputs));
  }
  return problems;
}

/**
 * What checking a keyless signature needs (ci after signing, promote and
 * verify with a certificate identity): a transparency log (not "off"), the
 * certificate identity and its OIDC issuer.
 */
export function keylessVerifierProblems(inputs: { rekorUrl?: string; certificateIdentity?: string; certificateOidcIssuer?: string }): InvalidInputError[] {
  const problems: InvalidInputError[] = [];
  if (inputs.rekorUrl === "off") problems.push(new InvalidInputError("Rekor URL", "off", [`an http(s) URL of a Rekor, e.g. ${PUBLIC_REKOR}`], "keyless signing needs a transparency log"));
  if (!inputs.certificateIdentity) problems.push(missing("certificate identity", "the job's identity, e.g. $CI_PROJECT_URL//.gitlab-ci.yml@refs/heads/$CI_COMMIT_BRANCH", "keyless verification needs the signer's identity"));
  if (!inputs.certificateOidcIssuer) problems.push(missing("certificate OIDC issuer", `the issuer URL, e.g. ${GITLAB_ISSUER} ($CI_SERVER_URL)`, "keyless verification needs the token's issuer"));
  return problems;
}

/** A required argument that was not given. */
function missing(field: string, valid: string, why: string): InvalidInputError {
  return new InvalidInputError(field, "(not given)", [valid], why);
}

/** A checked --platforms list (or --platform), as platform names in the order given. */
export function parsePlatforms(value: string, field: "platform" | "platforms" = "platforms"): PlatformName[] {
  const error = checkField(field, value);
  if (error) throw error;
  return splitPlatforms(value) as PlatformName[];
}

/** Shape check for a name looked up in the manifest later (version, flavor). */
function checkName(label: string, value: unknown): InvalidInputError | null {
  if (typeof value !== "string") return new InvalidInputError(label, value, ["a string"], "not a string");
  const r = z.string().superRefine((v, ctx) => void plain(ctx, v, 128)).safeParse(value);
  if (!r.success) return new InvalidInputError(label, value, ["a name in manifest.json"], r.error.issues[0]?.message);
  return null;
}

/**
 * `record[key]` only when `key` is the record's own key: `__proto__`,
 * `constructor`, `toString` and other inherited names are refused.
 */
export function ownValue<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return typeof key === "string" && Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Looks `key` up as an own key of `record`, or throws naming the field and the valid keys. */
export function lookup<T>(field: string, record: Readonly<Record<string, T>>, key: string, valid: readonly string[] = Object.keys(record)): T {
  const value = ownValue(record, key);
  if (value === undefined) throw new InvalidInputError(field, key, valid);
  return value;
}

// ---- image references --------------------------------------------------------

const REF_DOMAIN = "(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?";
const REF_NAME = `(?:${REF_DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const REF_DIGEST = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}";
/** OCI/distribution's reference grammar: name[:tag][@digest]. */
export const REFERENCE_RE = new RegExp(`^(${REF_NAME})(?::([\\w][\\w.-]{0,127}))?(?:@(${REF_DIGEST}))?$`);

/** Why `ref` is not an image reference by the OCI/distribution grammar, or null when it is. */
export function referenceProblem(ref: string, options: { digest?: boolean } = {}): string | null {
  if (ref.length === 0) return "empty";
  if (INVISIBLE.test(ref) || SPACE.test(ref)) return "it holds whitespace or an invisible character";
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) return "leave out the scheme";
  const m = REFERENCE_RE.exec(ref);
  if (!m) return "not an image reference (host/path[:tag][@digest], lowercase path)";
  if ((m[1] ?? "").length > 255) return "the name is longer than 255 characters";
  if (m[2] !== undefined && !TAG_PATTERN.test(m[2])) return "bad tag";
  if (m[3] !== undefined && options.digest === false) return "carries a digest: pin it in baseDigest instead";
  if (m[3]?.startsWith("sha256:") && !/^sha256:[a-f0-9]{64}$/.test(m[3])) return "a sha256 digest has 64 lowercase hex digits";
  return null;
}
