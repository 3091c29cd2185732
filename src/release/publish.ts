/**
 * Publish: push each image once under its commit tag, read the digest back,
 * and set the branch -latest tag to that digest by manifest copy (no
 * re-push). The push itself comes in as a function (the engine's, or a test's).
 */
import pLimit from "p-limit";
import { messageOf as message } from "../core/errors.js";
import { silentLogger, type Logger } from "../core/log.js";
import type { BranchTags } from "../core/tags.js";
import { type PlatformDigest, RegistryClient } from "../registry/client.js";
import { formatRef, parseRef, repositoryOf } from "../registry/reference.js";

/** Pushes one image to `ref` (a tag reference) and returns `ref@sha256:...`. */
export type PushFn = (image: string, ref: string) => Promise<string>;

export interface PublishedImage {
  image: string;
  ok: boolean;
  /** The digest the push returned and the registry gave back. */
  digest: string | null;
  mediaType: string | null;
  sizeBytes: number | null;
  /** For an image index: each platform's manifest digest, as the registry holds it. */
  platforms: PlatformDigest[];
  /** References set by this run: commit tag, then branch -latest. */
  references: string[];
  durationMs: number;
  error: string | null;
}

export interface PublishOptions {
  /** Registry path the images go under, e.g. registry.gitlab.com/group/project. */
  registry: string;
  images: readonly string[];
  tags: Pick<BranchTags, "commit" | "branchLatest">;
  push: PushFn;
  client: RegistryClient;
  /** Point the branch -latest tag at the digest (default true). */
  moveBranchLatest?: boolean;
  /** Images pushed at once (default 4). */
  concurrency?: number;
  log?: Logger;
}

/** Push every image once, check its digest, and point the branch -latest tag at it. */
export async function publish(options: PublishOptions): Promise<PublishedImage[]> {
  const log = options.log ?? silentLogger();
  const limit = pLimit(options.concurrency ?? 4);
  return Promise.all(
    options.images.map((image) =>
      limit(async (): Promise<PublishedImage> => {
        const started = Date.now();
        const repo = repositoryOf(options.registry, image);
        const commitRef = formatRef({ ...repo, tag: options.tags.commit });
        const row: PublishedImage = {
          image,
          ok: false,
          digest: null,
          mediaType: null,
          sizeBytes: null,
          platforms: [],
          references: [],
          durationMs: 0,
          error: null,
        };
        try {
          const pushed = await options.push(image, commitRef);
          const digest = parseRef(pushed).digest;
          if (!digest) throw new Error(`push ${commitRef} returned no digest (${JSON.stringify(pushed)})`);
          const back = await options.client.getManifest(commitRef);
          if (back.digest !== digest) {
            throw new Error(`read back ${commitRef}: the registry has ${back.digest}, the push returned ${digest}`);
          }
          row.digest = digest;
          row.mediaType = back.mediaType;
          row.references.push(commitRef);
          row.sizeBytes = await options.client.imageSize(back);
          row.platforms = RegistryClient.platformsOf(back);
          if (options.moveBranchLatest ?? true) {
            await options.client.copyManifest({ ...repo, digest }, options.tags.branchLatest);
            row.references.push(formatRef({ ...repo, tag: options.tags.branchLatest }));
          }
          row.ok = true;
          log.info({ image, digest, refs: row.references }, "published");
        } catch (error) {
          row.error = message(error);
          log.error({ image, err: row.error }, "publish failed");
        }
        row.durationMs = Date.now() - started;
        return row;
      }),
    ),
  );
}
