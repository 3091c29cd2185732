/**
 * The engine side of signing: cosign's pinned image (manifest.json `cosign`,
 * by digest) with the run's secrets put where cosign reads them, as Dagger
 * Secrets only:
 * - the registry credentials: a docker config.json, mounted as a secret file
 *   under DOCKER_CONFIG (never an env variable or an argument);
 * - key-based: the private key mounted as a secret file, its password as the
 *   secret variable COSIGN_PASSWORD;
 * - keyless: the job's OIDC token mounted as a secret file (its path goes to
 *   --identity-token).
 * The argv of every call comes from signing.ts. Each call carries a nonce so
 * the engine never answers a signing or a verification from its cache.
 */
import { randomBytes } from "node:crypto";
import { type Container, dag, type File, type Secret } from "@dagger.io/dagger";
import { registerSecret } from "../core/log.js";
import type { Manifest } from "../core/manifest.js";
import {
  CONTAINER_DOCKER_CONFIG,
  CONTAINER_PATHS,
  type CosignRunner,
  dockerConfig,
  publicKeyArgs,
  renderVerification,
  type Signer,
  type SigningMode,
  signerOf,
  type Verifier,
  verifierOf,
  verifyReference,
} from "./signing.js";
import { parseRef } from "../registry/reference.js";

/** The signing inputs of publish, ci and verify, checked by inputs.ts. */
export interface SigningArgs {
  mode: SigningMode;
  /** Key-based: the encrypted cosign private key (file contents). */
  signingKey?: Secret | undefined;
  /** Key-based: its password. */
  signingPassword?: Secret | undefined;
  /** Keyless: the OIDC identity token (GitLab: an id_token with aud sigstore). */
  oidcToken?: Secret | undefined;
  fulcioUrl?: string | undefined;
  /** A Rekor URL, "off", or absent (keyless: the public Rekor; key-based: off). */
  rekorUrl?: string | undefined;
  certificateIdentity?: string | undefined;
  certificateOidcIssuer?: string | undefined;
}

/** cosign's image by digest; refused when the manifest pins no digest. */
export function cosignImage(manifest: Manifest): string {
  const { image, digest } = manifest.cosign;
  if (!digest) throw new Error(`no digest is pinned for cosign (${image}): refusing to sign with an unchecked cosign; pin cosign.digest in a site manifest`);
  return `${image}@${digest}`;
}

/** Registry credentials as a Dagger Secret holding a docker config.json (registered for scrubbing). */
export function dockerConfigSecret(host: string, username: string, password: string): Secret {
  const json = dockerConfig(host, username, password);
  registerSecret(json);
  registerSecret(Buffer.from(`${username}:${password}`).toString("base64"));
  return dag.setSecret(`slinky-cosign-docker-config-${randomBytes(6).toString("hex")}`, json);
}

/**
 * cosign's container with the secrets in place. `publicKey`: mounted for
 * key-based verification (the public half is not a secret).
 */
export function cosignContainer(
  manifest: Manifest,
  signing: SigningArgs,
  registryAuth: Secret | null,
  publicKey?: File,
): Container {
  let c = dag
    .container()
    .from(cosignImage(manifest))
    // The image runs as an unprivileged user by default; root reads the 0400 secret mounts.
    .withUser("0:0")
    .withDirectory("/run/slinky/home", dag.directory())
    .withEnvVariable("HOME", "/run/slinky/home")
    .withEnvVariable("DOCKER_CONFIG", CONTAINER_DOCKER_CONFIG);
  if (registryAuth) c = c.withMountedSecret(`${CONTAINER_DOCKER_CONFIG}/config.json`, registryAuth);
  if (signing.mode === "key") {
    if (signing.signingKey) c = c.withMountedSecret(CONTAINER_PATHS.key, signing.signingKey);
    if (signing.signingPassword) c = c.withSecretVariable("COSIGN_PASSWORD", signing.signingPassword);
  }
  if (signing.mode === "keyless" && signing.oidcToken) c = c.withMountedSecret(CONTAINER_PATHS.token, signing.oidcToken);
  if (publicKey) c = c.withFile(CONTAINER_PATHS.publicKey, publicKey);
  return c;
}

/** The container that runs one cosign call: its predicate files, a nonce (never cached), the argv after cosign's entrypoint. */
export function cosignCall(base: Container, argv: string[], files: Record<string, string>, nonce: string): Container {
  let c = base.withEnvVariable("SLINKY_COSIGN_CALL", nonce);
  for (const [path, content] of Object.entries(files)) c = c.withNewFile(path, content);
  return c.withExec(argv, { useEntrypoint: true });
}

/** A CosignRunner over the engine: each step a fresh, uncached exec in `base`. */
export function engineRunner(base: Container): CosignRunner {
  return (step) => cosignCall(base, step.argv, step.files, randomBytes(8).toString("hex")).stdout();
}

/** The public key of the signing key (key-based), derived in cosign's container: for verification and the report. */
export function derivedPublicKey(manifest: Manifest, signing: SigningArgs): File {
  return cosignCall(cosignContainer(manifest, signing, null), publicKeyArgs(CONTAINER_PATHS), {}, randomBytes(8).toString("hex")).file(CONTAINER_PATHS.publicKey);
}

/** The signer of the checked signing inputs (null when off). */
export function signerFromArgs(signing: SigningArgs): Signer | null {
  return signerOf(signing.mode, { fulcioUrl: signing.fulcioUrl, rekorUrl: signing.rekorUrl });
}

/** What `verify` takes. */
export interface VerifyArgs {
  reference: string;
  mode: SigningMode;
  publicKey?: File | undefined;
  certificateIdentity?: string | undefined;
  certificateOidcIssuer?: string | undefined;
  rekorUrl?: string | undefined;
  username?: string | undefined;
  password?: Secret | undefined;
}

/**
 * The verifier of checked arguments (a run's signing, or `verify`'s and
 * promote's): the transparency log as signing uses it (signerOf), and for
 * keyless the certificate identity and issuer.
 */
export function verifierFromArgs(a: Pick<VerifyArgs, "mode" | "rekorUrl" | "certificateIdentity" | "certificateOidcIssuer">): Verifier {
  const signer = signerOf(a.mode, { rekorUrl: a.rekorUrl });
  if (!signer) throw new Error("nothing to verify: signing is off");
  return verifierOf(signer, { certificateIdentity: a.certificateIdentity ?? "", certificateOidcIssuer: a.certificateOidcIssuer ?? "" });
}

/** A CosignRunner that verifies only (no signing secrets), with the registry's credentials when given. */
export async function verifyingRunner(manifest: Manifest, host: string, a: Omit<VerifyArgs, "reference">): Promise<CosignRunner> {
  const auth = a.username && a.password ? dockerConfigSecret(host, a.username, await a.password.plaintext()) : null;
  return engineRunner(cosignContainer(manifest, { mode: "off" }, auth, a.publicKey));
}

/** `verify`: the signature and both attestations of a reference, checked in cosign's container; throws (with the text) unless all verify. */
export async function verifyInEngine(manifest: Manifest, a: VerifyArgs): Promise<string> {
  const verifier = verifierFromArgs(a);
  const run = await verifyingRunner(manifest, parseRef(a.reference).registry, a);
  const result = await verifyReference(a.reference, verifier, CONTAINER_PATHS, run);
  const text = renderVerification(result);
  if (!result.ok) throw new Error(text);
  return text;
}

/** The signing arguments as the command line gives them: the mode still an unchecked string. */
export type SigningInputs = Omit<SigningArgs, "mode"> & { signing: string };

/** The signing inputs that may be given empty (a CI variable left unset). */
export const SIGNING_OPTIONAL = ["fulcioUrl", "rekorUrl", "certificateIdentity", "certificateOidcIssuer"] as const;

/** The signing strings checked with every other input. */
export function signingFields(s: SigningInputs) {
  return { signing: s.signing, fulcioUrl: s.fulcioUrl, rekorUrl: s.rekorUrl, certificateIdentity: s.certificateIdentity, certificateOidcIssuer: s.certificateOidcIssuer };
}

/** Checked signing inputs as the engine run takes them (empty strings: not given). */
export function signingArgs(s: SigningInputs): SigningArgs {
  return {
    mode: s.signing as SigningMode,
    signingKey: s.signingKey,
    signingPassword: s.signingPassword,
    oidcToken: s.oidcToken,
    fulcioUrl: s.fulcioUrl || undefined,
    rekorUrl: s.rekorUrl || undefined,
    certificateIdentity: s.certificateIdentity || undefined,
    certificateOidcIssuer: s.certificateOidcIssuer || undefined,
  };
}
