/**
 * A real two-platform OCI image index (linux/amd64 + linux/arm64) through
 * publish and promote against Debian's docker-registry on 127.0.0.1 (token
 * auth, GitLab's flow), read back with skopeo: the commit tag, the branch
 * -latest tag and the production tag all hold the index's exact bytes, and
 * each platform still resolves to the image that was pushed for it.
 *
 * The "push" does what Dagger's `publish` with platform variants does: each
 * platform's image by digest, then the index under the commit tag. The images
 * are tiny synthetic ones whose config names their platform.
 */
import { execFile } from "node:child_process";
import { gzipSync } from "node:zlib";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MEDIA_TYPES, RegistryClient } from "../../src/registry/client.js";
import { digestOf } from "../../src/registry/reference.js";
import { promote } from "../../src/release/promote.js";
import { publish, type PushFn } from "../../src/release/publish.js";
import { branchTags } from "../../src/core/tags.js";
import { type RunningRegistry, type RunningTokenServer, startAuthRegistry, tarOf } from "../registry/harness.js";

const execFileAsync = promisify(execFile);
const USER = { username: "gitlab-ci-token", password: `canary-${Date.now().toString(36)}-1ndex` };
const IMAGES = ["slurmd", "login-pyxis"];
const PLATFORMS = [
  { os: "linux", architecture: "amd64" },
  { os: "linux", architecture: "arm64", variant: "v8" },
] as const;
type Platform = (typeof PLATFORMS)[number];

interface PlatformImage {
  platform: Platform;
  config: Buffer;
  layer: Buffer;
  manifest: Buffer;
  digest: string;
}

/** One platform's image: a layer and a config that name the image and the platform. */
function platformImage(image: string, platform: Platform): PlatformImage {
  const tar = tarOf("etc/slinky-platform", Buffer.from(`${image} ${platform.os}/${platform.architecture}\n`));
  const layer = gzipSync(tar, { level: 9 });
  const config = Buffer.from(
    JSON.stringify({
      ...platform,
      config: { Labels: { "org.opencontainers.image.title": image } },
      rootfs: { type: "layers", diff_ids: [digestOf(tar)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestOf(config), size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: digestOf(layer), size: layer.length }],
    }),
  );
  return { platform, config, layer, manifest, digest: digestOf(manifest) };
}

function indexOf(children: readonly PlatformImage[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: children.map((c) => ({
        mediaType: MEDIA_TYPES.ociManifest,
        digest: c.digest,
        size: c.manifest.length,
        platform: c.platform,
      })),
    }),
  );
}

describe("a two-platform image index through publish and promote (token auth)", () => {
  let registry: RunningRegistry;
  let tokens: RunningTokenServer | undefined;
  const client = () => new RegistryClient({ ...USER, plainHttp: true, minBackoffMs: 20 });
  const pushed = new Map<string, { children: PlatformImage[]; index: Buffer }>();

  beforeAll(async () => {
    ({ registry, tokens } = await startAuthRegistry("token", [USER]));
  });
  afterAll(async () => {
    await registry?.stop();
    await tokens?.stop();
  });

  /** As Dagger's publish with platform variants: children by digest, then the index under the tag. */
  const pushIndex =
    (platforms: readonly Platform[]): PushFn =>
    async (image, ref) => {
      const c = client();
      const repo = ref.slice(0, ref.lastIndexOf(":"));
      const children = platforms.map((p) => platformImage(image, p));
      for (const child of children) {
        await c.uploadBlob(ref, child.layer);
        await c.uploadBlob(ref, child.config);
        await c.putManifest(`${repo}@${child.digest}`, child.manifest, MEDIA_TYPES.ociManifest);
      }
      const index = indexOf(children);
      pushed.set(`${image} ${ref}`, { children, index });
      return `${ref}@${await c.putManifest(ref, index, MEDIA_TYPES.ociIndex)}`;
    };

  const skopeo = async (args: string[]) =>
    // Async: the token server answers from this process.
    execFileAsync("skopeo", [...args, "--tls-verify=false", "--creds", `${USER.username}:${USER.password}`], {
      encoding: "buffer",
      timeout: 30_000,
    });
  const inspectRaw = async (ref: string) => (await skopeo(["inspect", "--raw", `docker://${ref}`])).stdout;
  const platformArgs = (architecture: string) => ["--override-os", "linux", "--override-arch", architecture];
  /** What a linux/<architecture> client resolves `ref` to. skopeo's `Digest` is the top-level (index) digest. */
  const inspectFor = async (ref: string, architecture: string) => {
    const seen = JSON.parse((await skopeo(["inspect", ...platformArgs(architecture), `docker://${ref}`])).stdout.toString("utf8")) as {
      Digest: string;
      Architecture: string;
      Os: string;
      Layers: string[];
    };
    const config = (await skopeo(["inspect", "--config", "--raw", ...platformArgs(architecture), `docker://${ref}`])).stdout;
    return { ...seen, configDigest: digestOf(config) };
  };

  it("commit, branch -latest and production tags hold the index byte for byte; each platform resolves to its own image", async () => {
    const tags = branchTags({ line: "25.11", flavor: "ubuntu24.04", branch: "main", sha: "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432", defaultBranch: "main" });
    const path = `${registry.host}/group/multiarch`;
    const published = await publish({ registry: path, images: IMAGES, tags, push: pushIndex(PLATFORMS), client: client() });
    expect(published.map((p) => [p.image, p.ok, p.error])).toEqual(IMAGES.map((i) => [i, true, null]));

    const promotion = await promote({
      registry: path,
      images: IMAGES,
      published,
      productionTag: tags.production,
      commitTag: tags.commit,
      branch: "main",
      defaultBranch: "main",
      client: client(),
    });
    expect(promotion.promoted, promotion.reason).toBe(true);
    expect(promotion.moved.map((m) => m.image).sort()).toEqual([...IMAGES].sort());

    for (const row of published) {
      const { children, index } = pushed.get(`${row.image} ${path}/${row.image}:${tags.commit}`)!;
      const indexDigest = digestOf(index);
      expect(row.digest).toBe(indexDigest);
      expect(row.mediaType).toBe(MEDIA_TYPES.ociIndex);
      // The report's platform digests, read from the registry: each platform's manifest as pushed.
      expect(row.platforms).toEqual([
        { platform: "linux/amd64", digest: children[0]!.digest },
        { platform: "linux/arm64/v8", digest: children[1]!.digest },
      ]);
      // Both platforms' config and layer: the size is the index's, not one platform's.
      expect(row.sizeBytes).toBe(children.reduce((sum, c) => sum + c.config.length + c.layer.length, 0));
      for (const tag of [tags.commit, tags.branchLatest, tags.production!]) {
        const ref = `${path}/${row.image}:${tag}`;
        const raw = await inspectRaw(ref);
        expect(digestOf(raw), ref).toBe(indexDigest);
        expect(raw.equals(index), ref).toBe(true);
        for (const child of children) {
          const seen = await inspectFor(ref, child.platform.architecture);
          expect(
            [seen.Digest, seen.Os, seen.Architecture, seen.configDigest, seen.Layers],
            `${ref} ${child.platform.architecture}`,
          ).toEqual([indexDigest, "linux", child.platform.architecture, digestOf(child.config), [digestOf(child.layer)]]);
          // The platform's own manifest, by digest, is what was pushed for it.
          expect(digestOf(await inspectRaw(`${path}/${row.image}@${child.digest}`))).toBe(child.digest);
        }
      }
    }
  });

  it("an index without arm64 is seen as such: skopeo finds no linux/arm64 image in it", async () => {
    const tags = branchTags({ line: "25.11", flavor: "debian13", branch: "feature/amd64-only", sha: "0123456789abcdef0123456789abcdef01234567", defaultBranch: "main" });
    const path = `${registry.host}/group/amd64only`;
    const [row] = await publish({ registry: path, images: ["slurmctld"], tags, push: pushIndex([PLATFORMS[0]]), client: client() });
    expect(row?.ok, row?.error ?? "").toBe(true);
    const ref = `${path}/slurmctld:${tags.branchLatest}`;
    const amd64 = platformImage("slurmctld", PLATFORMS[0]);
    const seen = await inspectFor(ref, "amd64");
    expect([seen.Digest, seen.Architecture, seen.configDigest]).toEqual([row?.digest, "amd64", digestOf(amd64.config)]);
    const error = await inspectFor(ref, "arm64").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(String((error as { stderr?: Buffer }).stderr ?? error)).toMatch(/no image found in (image index|manifest list) for architecture "?arm64/);
  });
});
