/**
 * Signing in a run: every published image signed, attested and verified (two
 * at a time) through the run's Signing, and the bytes cosign's manifests take
 * in the registry. All must verify for the run to promote.
 */
import pLimit from "p-limit";
import { messageOf as message } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { RegistryClient } from "../registry/client.js";
import { formatRef, repositoryOf } from "../registry/reference.js";
import { cosignTags, type DigestTarget, type SignedDigest } from "../supply-chain/signing.js";
import type { PublishedImage } from "./publish.js";
import type { SigningReport, SigningRow } from "./report.js";

/** What one published image is signed as: its name, and signing.ts's target (repository, digest, an index's platform digests). */
export type SigningTarget = DigestTarget & { image: string };

/**
 * Signing in a run: how (for the report) and the function that signs,
 * attests and verifies one published image, each of its digests (never
 * throws: a digest that failed carries its error).
 */
export interface Signing {
  describe: Omit<SigningReport, "ok" | "skipped" | "images">;
  sign: (target: SigningTarget) => Promise<SignedDigest[]>;
}

/** Bytes of cosign's signature and attestation manifests for these digests (null when unreadable). */
async function cosignBytes(client: RegistryClient, repository: string, digests: readonly string[]): Promise<{ signature: number | null; attestation: number | null }> {
  const sum = async (kind: "signature" | "attestation") => {
    let total = 0;
    for (const digest of digests) {
      const ref = `${repository}:${cosignTags(digest)[kind]}`;
      if (!(await client.headManifest(ref))) continue;
      total += await client.imageSize(await client.getManifest(ref));
    }
    return total;
  };
  try {
    return { signature: await sum("signature"), attestation: await sum("attestation") };
  } catch {
    return { signature: null, attestation: null };
  }
}

/**
 * Sign, attest and verify every published image (two at a time). All
 * must verify for the run to promote.
 */
export async function signPublished(
  signing: Signing,
  registry: string,
  published: readonly PublishedImage[],
  client: RegistryClient,
  log: Logger,
): Promise<SigningReport> {
  const limit = pLimit(2);
  const images = await Promise.all(
    published.map((p) =>
      limit(async (): Promise<SigningRow> => {
        const started = Date.now();
        const repo = repositoryOf(registry, p.image);
        const repository = formatRef(repo);
        const row: SigningRow = { image: p.image, ok: false, digests: [], signatureBytes: null, attestationBytes: null, ms: 0, error: null };
        try {
          if (!p.digest) throw new Error("not published");
          row.digests = await signing.sign({ image: p.image, repository, digest: p.digest, platforms: p.platforms });
          const failed = row.digests.filter((d) => !d.verified);
          if (row.digests.length === 0) throw new Error("nothing was signed");
          if (failed.length > 0) throw new Error(failed.map((d) => `${d.role} ${d.digest}: ${d.error ?? "not verified"}`).join("; "));
          row.ok = true;
          log.info({ image: p.image, digests: row.digests.map((d) => d.digest) }, "signed, attested and verified");
        } catch (error) {
          row.error = message(error);
          log.error({ image: p.image, err: row.error }, "signing failed");
        }
        const sizes = await cosignBytes(client, repository, row.digests.filter((d) => d.signed).map((d) => d.digest));
        row.signatureBytes = sizes.signature;
        row.attestationBytes = sizes.attestation;
        row.ms = Date.now() - started;
        return row;
      }),
    ),
  );
  return { ...signing.describe, ok: images.every((r) => r.ok), skipped: null, images };
}
