/**
 * The run report: one JSON document and its Markdown rendering, written by
 * `ci` (and by `publish`/`promote`) for the job's artifacts. Every string in
 * it passes through the secret scrubber before it is rendered.
 */
import { secrets, type SecretScrubber } from "../core/log.js";
import type { SignedDigest } from "../supply-chain/signing.js";

/** One tag moved (or restored) by promotion. */
export interface TagMove {
  image: string;
  /** The production reference, e.g. registry/group/project/slurmd:25.11-ubuntu24.04-latest. */
  ref: string;
  /** Digest before the move; null when the tag did not exist. */
  from: string | null;
  to: string | null;
}

/** Where a production tag points after the run, read back from the registry. */
export type TagState =
  /** On the digest it held before the run (absent, if it did not exist). */
  | "old"
  /** On this run's digest. */
  | "new"
  /** On a digest neither this run nor the state before it had: another writer. */
  | "other"
  /** Could not be read back, after retries. */
  | "unknown";

/** One production tag of the run: before, wanted, and now (as read back). */
export interface ProductionTag {
  image: string;
  ref: string;
  /** Digest before the run; null when the tag did not exist. */
  old: string | null;
  /** This run's digest. */
  new: string;
  /** Digest read back at the end; null when absent or unknown (see state). */
  now: string | null;
  state: TagState;
}

export type PromotionOutcome =
  /** Every production tag points at this run's digest. */
  | "promoted"
  /** Promotion did not apply (not the default branch). */
  | "not-attempted"
  /** Refused before any tag was touched (an image failed, or its check did). */
  | "refused"
  /** A move failed; every production tag is back on (or still on) its old digest. */
  | "rolled-back"
  /** Another writer changed a production tag meanwhile; this run restored what it moved. */
  | "conflict"
  /** Some production tag is not on its old digest, or could not be read: see notRestored. */
  | "not-restored";

export interface PromotionResult {
  /** False when promotion did not apply (not the default branch, or nothing pushed). */
  attempted: boolean;
  /** True only when every production tag was read back on this run's digest. */
  promoted: boolean;
  outcome: PromotionOutcome;
  reason: string;
  moved: TagMove[];
  /** Already at this run's digest (a re-run of the same commit). */
  unchanged: TagMove[];
  /** Possibly moved, then read back on its old digest. */
  rolledBack: TagMove[];
  /** Not read back on its old digest after the rollback: these need a hand. */
  notRestored: (TagMove & { why: string })[];
  failed: { image: string; error: string }[];
  /** Production tags another writer changed while this run promoted: what this run expected, what it found. */
  conflicts: { image: string; ref: string; expected: string | null; found: string | null }[];
  /** Every production tag of the run, read back after the promotion (and rollback). */
  tags: ProductionTag[];
}

export interface ImageReport {
  image: string;
  /** Build and smoke test passed (null: not run). */
  built: boolean | null;
  buildMs: number | null;
  pushed: boolean;
  /** Every reference that now points at `digest`: commit tag, branch -latest, production if promoted. */
  references: string[];
  /** The digest every reference points at: an image index's when several platforms were built. */
  digest: string | null;
  mediaType: string | null;
  /** For an image index: each platform's manifest digest, read from the registry. */
  platforms: { platform: string; digest: string }[];
  /** Config plus compressed layers, as the registry stores them. */
  sizeBytes: number | null;
  publishMs: number | null;
  promoted: boolean;
  error: string | null;
}

export interface RunContext {
  branch: string;
  commitSha: string;
  defaultBranch: string;
  pipelineSource: string;
  registry: string;
  slurmVersion: string;
  flavor: string;
  group: string;
}

export type RunMode = "build-only" | "publish" | "publish-and-promote";

/** One package set in the build cache: hit (from where) or built (why), and what was written. */
export interface PackageSetReport {
  /** Set when the run builds several platforms. */
  platform?: string;
  key: string;
  hit: boolean;
  from: string | null;
  reason: string | null;
  /** Inputs that differ from the scope's newest entry, when known. */
  changed: string[] | null;
  written: string | null;
}

/** The registry build cache in a run: what was reused, what was built and why, what was written. */
export interface CacheReport {
  used: boolean;
  /** Why the cache was not used (switched off, no registry, unreadable base...). */
  disabled: string | null;
  registry: string | null;
  scope: string | null;
  maxAgeDays: number | null;
  lookupMs: number;
  writeMs: number;
  packages: PackageSetReport | null;
  /** A run of several platforms: each platform's package set (then `packages` is null and every image is built). */
  packageSets?: PackageSetReport[];
  images: {
    image: string;
    key: string;
    reused: boolean;
    from: string | null;
    reason: string | null;
    changed: string[] | null;
    written: string | null;
  }[];
  warnings: string[];
}

/** One image's signatures and attestations (each digest: the image, or an index and its platforms). */
export interface SigningRow {
  image: string;
  ok: boolean;
  digests: SignedDigest[];
  /** Bytes cosign stored for the signatures (the .sig manifests' config and layers), all digests. */
  signatureBytes: number | null;
  /** Bytes of the attestations (the .att manifests: DSSE envelopes of the SBOM and provenance). */
  attestationBytes: number | null;
  /** Wall time of signing, attesting and verifying this image. */
  ms: number;
  error: string | null;
}

/** How the run signed, and what (absent in reports of runs that did not sign). */
export interface SigningReport {
  mode: "key" | "keyless";
  /** Keyless: the Fulcio used. */
  fulcioUrl: string | null;
  /** The transparency log, or null (key-based without one). */
  rekorUrl: string | null;
  /** Keyless: the identity and issuer the run verified against. */
  certificateIdentity: string | null;
  certificateOidcIssuer: string | null;
  /** Key-based: the public key the run verified with (PEM), for verifiers. */
  publicKey: string | null;
  ok: boolean;
  /** Why nothing was signed, when nothing was (an image failed to publish). */
  skipped: string | null;
  images: SigningRow[];
}

export interface Report {
  schemaVersion: 1;
  ok: boolean;
  mode: RunMode;
  /** One sentence: what happened. */
  summary: string;
  context: RunContext;
  tags: { commit: string; branchLatest: string; production: string | null } | null;
  images: ImageReport[];
  promotion: PromotionResult | null;
  /** The registry build cache (absent in reports of runs without one). */
  cache?: CacheReport;
  /** Signatures and attestations, verified before promotion (absent when signing is off). */
  signing?: SigningReport;
  errors: string[];
  startedAt: string;
  finishedAt: string;
  durationMs: number;
}

/** An empty image row. */
export function imageRow(image: string): ImageReport {
  return {
    image,
    built: null,
    buildMs: null,
    pushed: false,
    references: [],
    digest: null,
    mediaType: null,
    platforms: [],
    sizeBytes: null,
    publishMs: null,
    promoted: false,
    error: null,
  };
}

/** The report as pretty JSON, scrubbed of every registered secret. */
export function renderJson(report: Report, scrubber: SecretScrubber = secrets): string {
  return `${scrubber.scrub(JSON.stringify(report, null, 2))}\n`;
}

function cell(text: string | null | undefined): string {
  return (text ?? "").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function seconds(ms: number | null): string {
  return ms === null ? "-" : `${(ms / 1000).toFixed(1)} s`;
}

export function formatBytes(bytes: number | null): string {
  if (bytes === null) return "-";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** The report as a Markdown summary, scrubbed of every registered secret. */
export function renderMarkdown(report: Report, scrubber: SecretScrubber = secrets): string {
  const c = report.context;
  const lines: string[] = [];
  lines.push(`# slinky-containers run: ${report.ok ? "OK" : "FAILED"}`, "");
  lines.push(report.summary, "");
  lines.push(
    `- Mode: ${report.mode}`,
    `- Branch: ${c.branch || "(none: merge-request or tag pipeline)"} (default ${c.defaultBranch}), pipeline source ${c.pipelineSource || "-"}`,
    `- Commit: ${c.commitSha || "-"}`,
    `- Slurm ${c.slurmVersion}, flavor ${c.flavor}, group ${c.group}`,
    `- Registry: ${c.registry || "-"}`,
    `- Duration: ${seconds(report.durationMs)} (${report.startedAt} to ${report.finishedAt})`,
  );
  if (report.tags) {
    lines.push(
      `- Tags: \`${report.tags.commit}\`, \`${report.tags.branchLatest}\`` +
        (report.tags.production ? `, production \`${report.tags.production}\`` : ""),
    );
  }
  lines.push("", "| image | built | pushed | digest | size | build | publish | promoted |", "|---|---|---|---|---|---|---|---|");
  for (const i of report.images) {
    const built = i.built === null ? "-" : i.built ? "yes" : "**no**";
    lines.push(
      `| ${cell(i.image)} | ${built} | ${i.pushed ? "yes" : "no"} | ${i.digest ? `\`${i.digest.slice(0, 19)}\`` : "-"} | ` +
        `${formatBytes(i.sizeBytes)} | ${seconds(i.buildMs)} | ${seconds(i.publishMs)} | ${i.promoted ? "yes" : "no"} |`,
    );
  }
  const refs = report.images.filter((i) => i.references.length > 0);
  if (refs.length > 0) {
    lines.push("", "## References", "");
    for (const i of refs) {
      for (const ref of i.references) lines.push(`- \`${ref}\`${i.digest ? ` -> \`${i.digest}\`` : ""}`);
    }
  }
  const indexes = report.images.filter((i) => i.platforms.length > 0);
  if (indexes.length > 0) {
    lines.push("", "## Platforms", "", "| image | index digest | platform | platform digest |", "|---|---|---|---|");
    for (const i of indexes) {
      for (const p of i.platforms) lines.push(`| ${cell(i.image)} | \`${i.digest ?? "-"}\` | ${cell(p.platform)} | \`${p.digest}\` |`);
    }
  }
  if (report.signing) lines.push("", ...renderSigning(report.signing));
  const p = report.promotion;
  if (p) {
    lines.push("", "## Promotion", "", `${p.promoted ? "Promoted" : `Not promoted (${p.outcome ?? "failed"})`}: ${p.reason}`);
    const moves = (title: string, list: TagMove[]) => {
      if (list.length === 0) return;
      lines.push("", `${title}:`);
      for (const m of list) lines.push(`- \`${m.ref}\`: ${m.from ?? "(new)"} -> ${m.to ?? "(deleted)"}`);
    };
    moves("Moved", p.moved);
    moves("Already there", p.unchanged);
    moves("Rolled back", p.rolledBack);
    if (p.notRestored.length > 0) {
      lines.push("", "NOT restored (fix by hand):");
      for (const m of p.notRestored) lines.push(`- \`${m.ref}\` left at ${m.to ?? "(unknown)"}: ${cell(m.why)}`);
    }
    if ((p.conflicts ?? []).length > 0) {
      lines.push("", "Conflict (another writer changed these production tags during the run):");
      for (const c of p.conflicts) lines.push(`- \`${c.ref}\`: expected ${c.expected ?? "(absent)"}, found ${c.found ?? "(absent)"}`);
    }
    if ((p.tags ?? []).length > 0 && p.attempted) {
      lines.push("", "| production tag | now | digest now | before | this run |", "|---|---|---|---|---|");
      const short = (d: string | null) => (d ? `\`${d.slice(0, 19)}\`` : "-");
      for (const t of p.tags) lines.push(`| \`${cell(t.ref)}\` | ${t.state} | ${short(t.now)} | ${short(t.old)} | ${short(t.new)} |`);
    }
  }
  if (report.cache) lines.push("", ...renderCache(report.cache));
  const failures = report.images.filter((i) => i.error);
  if (failures.length > 0 || report.errors.length > 0) {
    lines.push("", "## Failures", "");
    for (const i of failures) lines.push(`- ${i.image}: ${cell(i.error)}`);
    for (const e of report.errors) lines.push(`- ${cell(e)}`);
  }
  return `${scrubber.scrub(lines.join("\n"))}\n`;
}

/** The report's build-cache section: per image reused (from where) or built (and why), the package set, times. */
export function renderCache(cache: CacheReport): string[] {
  const lines = ["## Build cache", ""];
  if (!cache.used) {
    lines.push(`Not used: ${cell(cache.disabled ?? "off")}`);
  } else {
    lines.push(
      `- Cache: \`${cache.registry}\`, scope ${cache.scope}, entries up to ${cache.maxAgeDays} days old`,
      `- Lookup ${seconds(cache.lookupMs)}, writes ${seconds(cache.writeMs)}`,
      "",
      "| what | key | cache | from / why built |",
      "|---|---|---|---|",
    );
    const why = (reason: string | null, changed: string[] | null) =>
      cell(changed && changed.length > 0 ? `changed: ${changed.join(", ")}` : (reason ?? "-"));
    for (const p of [...(cache.packages ? [cache.packages] : []), ...(cache.packageSets ?? [])]) {
      const what = p.platform ? `package set (${p.platform})` : "package set";
      lines.push(`| ${what} | \`${p.key.slice(0, 12)}\` | ${p.hit ? "hit" : "miss"} | ${p.hit ? `\`${p.from}\`` : why(p.reason, p.changed)} |`);
    }
    for (const i of cache.images) {
      lines.push(
        `| ${cell(i.image)} | \`${i.key.slice(0, 12)}\` | ${i.reused ? "reused" : "built"} | ${i.reused ? `\`${i.from}\`` : why(i.reason, i.changed)} |`,
      );
    }
  }
  if (cache.warnings.length > 0) {
    lines.push("", "Cache warnings (the run built instead):");
    for (const w of cache.warnings) lines.push(`- ${cell(w)}`);
  }
  return lines;
}

/** The report's signing section: what was signed, each digest, whether its signature and attestations verified, sizes and times. */
export function renderSigning(signing: SigningReport): string[] {
  const lines = ["## Signing", ""];
  const how =
    signing.mode === "key"
      ? `key-based, transparency log ${signing.rekorUrl ? `\`${signing.rekorUrl}\`` : "off"}`
      : `keyless (Fulcio \`${signing.fulcioUrl}\`, Rekor \`${signing.rekorUrl}\`), identity \`${signing.certificateIdentity}\` from \`${signing.certificateOidcIssuer}\``;
  lines.push(`${signing.ok ? "Signed, attested and verified" : "NOT verified"}: ${how}.`);
  if (signing.skipped) lines.push("", `Not signed: ${cell(signing.skipped)}`);
  if (signing.images.length > 0) {
    lines.push(
      "",
      "| image | what | digest | signed | attestations | verified | signature | attestations size | time |",
      "|---|---|---|---|---|---|---|---|---|",
    );
    for (const row of signing.images) {
      row.digests.forEach((d, i) => {
        lines.push(
          `| ${i === 0 ? cell(row.image) : ""} | ${cell(d.role)} | \`${d.digest}\` | ${d.signed ? "yes" : "**no**"} | ${d.attested.join(", ") || "-"} | ` +
            `${d.verified ? "yes" : "**no**"} | ${i === 0 ? formatBytes(row.signatureBytes) : ""} | ${i === 0 ? formatBytes(row.attestationBytes) : ""} | ${i === 0 ? seconds(row.ms) : ""} |`,
        );
      });
    }
    const failed = signing.images.filter((r) => r.error);
    if (failed.length > 0) {
      lines.push("", "Signing failures:");
      for (const r of failed) lines.push(`- ${cell(r.image)}: ${cell(r.error)}`);
    }
  }
  if (signing.publicKey) lines.push("", "Verify with this public key (`cosign verify --key cosign.pub <ref>@<digest>`):", "", "```", signing.publicKey.trim(), "```");
  return lines;
}
