/**
 * Signing, attesting and verifying images with cosign, as data: every cosign
 * call is an argv built by a plain function here, and one orchestration
 * (`signImage`) runs them through a `CosignRunner`. In the engine the runner
 * is a pinned cosign container with the secrets mounted (cosign.engine.ts); in the
 * tests it is Debian's cosign on the host against a real registry.
 *
 * - Everything is by digest (`repo@sha256:...`): promotion copies manifests
 *   by digest, so every signature and attestation stays valid under every tag.
 * - Secrets never reach an argv: the private key and the OIDC token are files
 *   (mounted secrets), the key's password is COSIGN_PASSWORD (a secret
 *   variable), the registry credentials a docker config file (a mounted
 *   secret). The argv holds only their paths.
 * - Transparency log: keyless signing needs Rekor (Fulcio's certificates live
 *   minutes; the log's inclusion time proves the signature was made while the
 *   certificate was valid), public instance by default. Key-based signing
 *   does NOT upload to a transparency log unless a Rekor URL is given: the
 *   public Rekor would publish every private image digest, and an air-gapped
 *   site cannot reach it. Verification then skips the log (the key is the
 *   trust); with a Rekor URL, signing uploads and verification requires the
 *   entry.
 */
import { messageOf as message } from "../core/errors.js";

/** cosign attest --type values, and the predicate type each one records. */
export const ATTESTATIONS = {
  spdxjson: "https://spdx.dev/Document",
  slsaprovenance1: "https://slsa.dev/provenance/v1",
} as const;
export type AttestationType = keyof typeof ATTESTATIONS;
export const ATTESTATION_TYPES = Object.keys(ATTESTATIONS) as AttestationType[];

export const PUBLIC_FULCIO = "https://fulcio.sigstore.dev";
export const PUBLIC_REKOR = "https://rekor.sigstore.dev";
/** GitLab.com's OIDC issuer (the `iss` of a job's id_token there; self-managed: $CI_SERVER_URL). */
export const GITLAB_ISSUER = "https://gitlab.com";

/** How images are signed. */
export type SigningMode = "off" | "key" | "keyless";
export const SIGNING_MODES: readonly SigningMode[] = ["off", "key", "keyless"];

/** Key-based: a cosign private key (encrypted with a password). */
export interface KeySigner {
  kind: "key";
  /** Upload to this Rekor, or null: no transparency log (the default for key-based signing). */
  rekorUrl: string | null;
}

/** Keyless: a short-lived Fulcio certificate for the job's OIDC identity, logged in Rekor. */
export interface KeylessSigner {
  kind: "keyless";
  fulcioUrl: string;
  rekorUrl: string;
}

export type Signer = KeySigner | KeylessSigner;

/** How a signature is checked: the public key, or the certificate's identity and issuer. */
export type Verifier =
  | { kind: "key"; rekorUrl: string | null }
  | { kind: "keyless"; rekorUrl: string; certificateIdentity: string; certificateOidcIssuer: string };

/**
 * Where the runner puts what cosign reads. Only paths go into an argv; the
 * files behind them are secrets (key, token) or plain JSON (predicates).
 */
export interface CosignPaths {
  /** The encrypted private key (a mounted secret). */
  key: string;
  /** The public key, for verification. */
  publicKey: string;
  /** The OIDC identity token (a mounted secret). */
  token: string;
  /** A directory for predicate files (`<type>.json`). */
  predicates: string;
}

/** The paths inside the engine's cosign container. */
export const CONTAINER_PATHS: CosignPaths = {
  key: "/run/slinky/signing/cosign.key",
  publicKey: "/run/slinky/signing/cosign.pub",
  token: "/run/slinky/signing/oidc-token",
  predicates: "/run/slinky/predicates",
};
/** DOCKER_CONFIG of the cosign container: its config.json (registry credentials) is a mounted secret. */
export const CONTAINER_DOCKER_CONFIG = "/run/slinky/docker";

/** What a verifier needs, derived from how the run signed. */
export function verifierOf(signer: Signer, identity?: { certificateIdentity: string; certificateOidcIssuer: string }): Verifier {
  if (signer.kind === "key") return { kind: "key", rekorUrl: signer.rekorUrl };
  if (!identity) throw new Error("keyless verification needs the certificate identity and OIDC issuer");
  return { kind: "keyless", rekorUrl: signer.rekorUrl, ...identity };
}

function signerFlags(signer: Signer, paths: CosignPaths): string[] {
  if (signer.kind === "key") {
    const tlog = signer.rekorUrl === null ? ["--tlog-upload=false"] : [`--rekor-url=${signer.rekorUrl}`];
    return [`--key=${paths.key}`, ...tlog];
  }
  return [`--fulcio-url=${signer.fulcioUrl}`, `--rekor-url=${signer.rekorUrl}`, `--identity-token=${paths.token}`];
}

function verifierFlags(verifier: Verifier, paths: CosignPaths): string[] {
  if (verifier.kind === "key") {
    const tlog = verifier.rekorUrl === null ? ["--insecure-ignore-tlog=true"] : [`--rekor-url=${verifier.rekorUrl}`];
    return [`--key=${paths.publicKey}`, ...tlog];
  }
  return [
    `--certificate-identity=${verifier.certificateIdentity}`,
    `--certificate-oidc-issuer=${verifier.certificateOidcIssuer}`,
    `--rekor-url=${verifier.rekorUrl}`,
  ];
}

const DIGEST_REF = /^[^@\s]+@sha256:[0-9a-f]{64}$/;

/** Refuses anything but `repository@sha256:<64 hex>`: signing a tag would sign whatever it points at by then. */
export function requireDigestRef(ref: string): string {
  if (!DIGEST_REF.test(ref)) throw new Error(`not a reference by digest (repository@sha256:<64 hex>): ${JSON.stringify(ref)}`);
  return ref;
}

/**
 * `cosign sign` of one digest. `recursive`: an image index, whose platform
 * manifests are signed too (a verifier that resolved a platform's digest
 * finds its signature).
 */
export function signArgs(ref: string, signer: Signer, paths: CosignPaths, options: { recursive?: boolean } = {}): string[] {
  return ["sign", "--yes", ...signerFlags(signer, paths), ...(options.recursive ? ["--recursive"] : []), requireDigestRef(ref)];
}

/** The predicate file of an attestation type for one digest (one file per digest: runs may share a workspace). */
export function predicatePath(paths: CosignPaths, type: AttestationType, ref: string): string {
  return `${paths.predicates}/${requireDigestRef(ref).slice(ref.indexOf("@sha256:") + 8)}.${type}.json`;
}

/** `cosign attest` of one predicate (SPDX JSON or SLSA v1 provenance) on one digest. */
export function attestArgs(ref: string, type: AttestationType, signer: Signer, paths: CosignPaths): string[] {
  return [
    "attest",
    "--yes",
    ...signerFlags(signer, paths),
    `--type=${type}`,
    `--predicate=${predicatePath(paths, type, ref)}`,
    requireDigestRef(ref),
  ];
}

/** `cosign verify`: the signature of `ref` (a tag is resolved by cosign; by digest is what admission checks). */
export function verifyArgs(ref: string, verifier: Verifier, paths: CosignPaths): string[] {
  return ["verify", ...verifierFlags(verifier, paths), "--output=json", ref];
}

/** `cosign verify-attestation --type <type>`: a signed attestation of that predicate type on `ref`. */
export function verifyAttestationArgs(ref: string, type: AttestationType, verifier: Verifier, paths: CosignPaths): string[] {
  return ["verify-attestation", ...verifierFlags(verifier, paths), `--type=${type}`, "--output=json", ref];
}

/** `cosign public-key`: the public half of the private key, written to paths.publicKey. */
export function publicKeyArgs(paths: CosignPaths): string[] {
  return ["public-key", `--key=${paths.key}`, `--outfile=${paths.publicKey}`];
}

/**
 * A docker config.json holding one registry's credentials: what cosign
 * (go-containerregistry) reads from $DOCKER_CONFIG. Secret: the engine gets
 * it as a mounted Secret, the tests as a 0600 file.
 */
export function dockerConfig(host: string, username: string, password: string): string {
  const auth = Buffer.from(`${username}:${password}`).toString("base64");
  return JSON.stringify({ auths: { [host]: { auth } } });
}

/** cosign's signature and attestation tags for a digest (the "tag" storage cosign 2 uses). */
export function cosignTags(digest: string): { signature: string; attestation: string } {
  const tag = digest.replace(":", "-");
  return { signature: `${tag}.sig`, attestation: `${tag}.att` };
}

// ---- running the steps ----------------------------------------------------------

/** One cosign call: its argv and the plain (non-secret) files it reads. */
export interface CosignStep {
  name: string;
  argv: string[];
  /** path -> content, written before the call (predicates). */
  files: Record<string, string>;
}

/** Runs one cosign call with the run's secrets in place; resolves with stdout, rejects on a non-zero exit. */
export type CosignRunner = (step: CosignStep) => Promise<string>;

export interface StepResult {
  name: string;
  ok: boolean;
  ms: number;
  error: string | null;
}

/** One digest signed, attested and verified (or where that stopped). */
export interface SignedDigest {
  /** repository@sha256:... */
  ref: string;
  digest: string;
  /** "image", "index", or the platform of an index's manifest. */
  role: string;
  signed: boolean;
  attested: AttestationType[];
  verified: boolean;
  /** Predicate types cosign verify-attestation returned for this digest. */
  verifiedAttestations: string[];
  steps: StepResult[];
  error: string | null;
}

/** Predicates (the in-toto predicate bodies) to attest, by type. */
export type Predicates = Record<AttestationType, unknown>;


/**
 * The attestations verify-attestation printed (one DSSE envelope per line):
 * the predicate types whose statement names `digest` as its subject.
 */
export function attestedTypes(stdout: string, digest: string): string[] {
  const found: string[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.trim().startsWith("{")) continue;
    try {
      const envelope = JSON.parse(line) as { payload?: string };
      if (!envelope.payload) continue;
      const statement = JSON.parse(Buffer.from(envelope.payload, "base64").toString("utf8")) as {
        predicateType?: string;
        subject?: { digest?: { sha256?: string } }[];
      };
      const subjects = (statement.subject ?? []).map((s) => `sha256:${s.digest?.sha256 ?? ""}`);
      if (statement.predicateType && subjects.includes(digest)) found.push(statement.predicateType);
    } catch {
      // not an envelope line
    }
  }
  return found;
}

/** The digests cosign verify printed a verified signature for. */
export function signedDigests(stdout: string): string[] {
  try {
    const items = JSON.parse(stdout) as { critical?: { image?: { "docker-manifest-digest"?: string } } }[];
    return items.flatMap((i) => (i.critical?.image?.["docker-manifest-digest"] ? [i.critical.image["docker-manifest-digest"]] : []));
  } catch {
    return [];
  }
}

export interface SignImageOptions {
  /** repository@sha256:... */
  ref: string;
  role?: string;
  signer: Signer;
  verifier: Verifier;
  predicates: Predicates;
  paths: CosignPaths;
  run: CosignRunner;
  /** An image index: sign its platform manifests too. */
  recursive?: boolean;
  /** False: already signed (a platform manifest of an index signed recursively): attest and verify only. */
  sign?: boolean;
}

/**
 * Sign one digest, attest both predicates, then verify the signature and
 * both attestations with the verifier (what a cluster's admission policy
 * would check). Stops at the first failed step; never throws.
 */
export async function signImage(o: SignImageOptions): Promise<SignedDigest> {
  const digest = requireDigestRef(o.ref).slice(o.ref.indexOf("@") + 1);
  const result: SignedDigest = {
    ref: o.ref,
    digest,
    role: o.role ?? "image",
    signed: false,
    attested: [],
    verified: false,
    verifiedAttestations: [],
    steps: [],
    error: null,
  };
  const step = async (name: string, argv: string[], files: Record<string, string> = {}): Promise<string> => {
    const started = Date.now();
    try {
      const out = await o.run({ name, argv, files });
      result.steps.push({ name, ok: true, ms: Date.now() - started, error: null });
      return out;
    } catch (error) {
      result.steps.push({ name, ok: false, ms: Date.now() - started, error: message(error) });
      throw new Error(`${name} ${o.ref}: ${message(error)}`);
    }
  };
  try {
    if (o.sign ?? true) await step("sign", signArgs(o.ref, o.signer, o.paths, { recursive: o.recursive ?? false }));
    result.signed = true;
    for (const type of ATTESTATION_TYPES) {
      const predicate = JSON.stringify(o.predicates[type]);
      await step(`attest ${type}`, attestArgs(o.ref, type, o.signer, o.paths), { [predicatePath(o.paths, type, o.ref)]: predicate });
      result.attested.push(type);
    }
    const verified = signedDigests(await step("verify", verifyArgs(o.ref, o.verifier, o.paths)));
    if (!verified.includes(digest)) throw new Error(`verify ${o.ref}: cosign reported no signature on ${digest} (it reported ${verified.join(", ") || "none"})`);
    for (const type of ATTESTATION_TYPES) {
      const types = attestedTypes(await step(`verify-attestation ${type}`, verifyAttestationArgs(o.ref, type, o.verifier, o.paths)), digest);
      if (!types.includes(ATTESTATIONS[type])) {
        throw new Error(`verify-attestation ${o.ref}: no ${ATTESTATIONS[type]} statement about ${digest} (found ${types.join(", ") || "none"})`);
      }
      result.verifiedAttestations.push(ATTESTATIONS[type]);
    }
    result.verified = true;
  } catch (error) {
    result.error = message(error);
  }
  return result;
}

/** One reference checked: signature, both attestations (the `verify` function). */
export interface Verification {
  ref: string;
  signatureDigests: string[];
  attestations: Record<AttestationType, boolean>;
  ok: boolean;
  errors: string[];
}

/** Check a reference's signature and both attestations; never throws. */
export async function verifyReference(ref: string, verifier: Verifier, paths: CosignPaths, run: CosignRunner): Promise<Verification> {
  const v: Verification = { ref, signatureDigests: [], attestations: { spdxjson: false, slsaprovenance1: false }, ok: false, errors: [] };
  try {
    v.signatureDigests = signedDigests(await run({ name: "verify", argv: verifyArgs(ref, verifier, paths), files: {} }));
    if (v.signatureDigests.length === 0) v.errors.push("verify: no verified signature");
  } catch (error) {
    v.errors.push(`verify: ${message(error)}`);
  }
  for (const type of ATTESTATION_TYPES) {
    try {
      const out = await run({ name: `verify-attestation ${type}`, argv: verifyAttestationArgs(ref, type, verifier, paths), files: {} });
      const seen = out.split("\n").some((line) => {
        try {
          const payload = JSON.parse(Buffer.from((JSON.parse(line) as { payload: string }).payload, "base64").toString("utf8")) as { predicateType?: string };
          return payload.predicateType === ATTESTATIONS[type];
        } catch {
          return false;
        }
      });
      v.attestations[type] = seen;
      if (!seen) v.errors.push(`verify-attestation ${type}: no ${ATTESTATIONS[type]} statement`);
    } catch (error) {
      v.errors.push(`verify-attestation ${type}: ${message(error)}`);
    }
  }
  v.ok = v.errors.length === 0;
  return v;
}

/** The verification as lines of text (what `verify` prints). */
export function renderVerification(v: Verification): string {
  const lines = [`${v.ok ? "VERIFIED" : "NOT VERIFIED"} ${v.ref}`];
  lines.push(`- signature: ${v.signatureDigests.length > 0 ? `valid on ${v.signatureDigests.join(", ")}` : "none valid"}`);
  for (const type of ATTESTATION_TYPES) lines.push(`- attestation ${type} (${ATTESTATIONS[type]}): ${v.attestations[type] ? "valid" : "none valid"}`);
  for (const e of v.errors) lines.push(`- error: ${e}`);
  return lines.join("\n");
}

/**
 * The signer of a checked mode and URLs: none when off; key-based with no
 * transparency log unless a Rekor URL is given; keyless with the public
 * Fulcio and Rekor unless others are given.
 */
export function signerOf(mode: SigningMode, urls: { fulcioUrl?: string | undefined; rekorUrl?: string | undefined } = {}): Signer | null {
  const rekor = urls.rekorUrl && urls.rekorUrl !== "off" ? urls.rekorUrl : null;
  if (mode === "off") return null;
  if (mode === "key") return { kind: "key", rekorUrl: rekor };
  if (urls.rekorUrl === "off") throw new Error("keyless signing needs a transparency log: give a Rekor URL, not off");
  return { kind: "keyless", fulcioUrl: urls.fulcioUrl || PUBLIC_FULCIO, rekorUrl: rekor ?? PUBLIC_REKOR };
}

/** One published image to sign: its repository (no tag), digest, and an index's platform digests. */
export interface DigestTarget {
  repository: string;
  digest: string;
  platforms: readonly { platform: string; digest: string }[];
}

export interface SignTargetOptions {
  signer: Signer;
  verifier: Verifier;
  paths: CosignPaths;
  run: CosignRunner;
  /** The predicates of a digest: the image's (platform null: a single-platform image or the index), or one platform's. */
  predicates: (digest: string, platform: string | null) => Predicates | Promise<Predicates>;
}

/**
 * Sign, attest and verify one published image: a single-platform image's
 * digest; or an index's digest (signed recursively, so every platform
 * manifest carries a signature too) and then each platform's digest with
 * its own attestations (its own packages). Never throws.
 */
export async function signTarget(target: DigestTarget, o: SignTargetOptions): Promise<SignedDigest[]> {
  const at = (digest: string) => `${target.repository}@${digest}`;
  const index = target.platforms.length > 0;
  const once = async (digest: string, platform: string | null, extra: { role: string; recursive?: boolean; sign?: boolean }): Promise<SignedDigest> => {
    let predicates: Predicates;
    try {
      predicates = await o.predicates(digest, platform);
    } catch (error) {
      return { ref: at(digest), digest, role: extra.role, signed: false, attested: [], verified: false, verifiedAttestations: [], steps: [], error: `documents: ${message(error)}` };
    }
    return signImage({ ref: at(digest), signer: o.signer, verifier: o.verifier, paths: o.paths, run: o.run, predicates, ...extra });
  };
  if (!index) return [await once(target.digest, null, { role: "image" })];
  const results = [await once(target.digest, null, { role: "index", recursive: true })];
  if (!results[0]?.signed) return results;
  for (const p of target.platforms) results.push(await once(p.digest, p.platform, { role: p.platform, sign: false }));
  return results;
}

/** A check for promotion: null when `ref`'s signature and both attestations verify, else why not. */
export function verifiedOrWhy(verifier: Verifier, paths: CosignPaths, run: CosignRunner): (image: string, ref: string) => Promise<string | null> {
  return async (_image, ref) => {
    const v = await verifyReference(ref, verifier, paths, run);
    return v.ok ? null : v.errors.join("; ");
  };
}
