/**
 * The registry client against a real registry (Debian's docker-registry on
 * 127.0.0.1), once with htpasswd basic auth and once with token auth.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/core/log.js";
import { MEDIA_TYPES, RegistryClient } from "../../src/registry/client.js";
import { RegistryAuthError, RegistryError, RegistryNotFoundError } from "../../src/registry/errors.js";
import { digestOf, parseRef } from "../../src/registry/reference.js";
import {
  freePort,
  LogCapture,
  pushSynthetic,
  pushSyntheticIndex,
  type RunningRegistry,
  type RunningTokenServer,
  startAuthRegistry,
  syntheticImage,
} from "./harness.js";

const execFileAsync = promisify(execFile);
const CANARY = `canary-${Date.now().toString(36)}-P4ss:w"rd`;
const USER = { username: "ci-user", password: CANARY };

for (const mode of ["htpasswd", "token"] as const) {
  describe(`registry client, ${mode} auth`, () => {
    let registry: RunningRegistry;
    let tokens: RunningTokenServer | undefined;
    const capture = new LogCapture();
    const log = createLogger({ destination: capture.stream, level: "debug" });
    const client = () => new RegistryClient({ ...USER, plainHttp: true, logger: log, minBackoffMs: 20 });

    beforeAll(async () => {
      ({ registry, tokens } = await startAuthRegistry(mode, [USER]));
    });
    afterAll(async () => {
      await registry?.stop();
      await tokens?.stop();
      expect(capture.text()).not.toContain(CANARY);
    });

    it("pushes an image, reads it back by tag and digest, and copies it to a new tag with the same digest", async () => {
      const c = client();
      const ref = `${registry.host}/slinky/slurmd:t1`;
      const pushed = await pushSynthetic(c, ref, "copy");
      const digest = parseRef(pushed).digest as string;
      expect(digest).toBe(digestOf(syntheticImage("copy").manifest));

      const byTag = await c.getManifest(ref);
      expect(byTag.digest).toBe(digest);
      expect(byTag.mediaType).toBe(MEDIA_TYPES.ociManifest);
      const byDigest = await c.getManifest(`${registry.host}/slinky/slurmd@${digest}`);
      expect(byDigest.bytes.equals(byTag.bytes)).toBe(true);

      const copied = await c.copyManifest(`${registry.host}/slinky/slurmd@${digest}`, "t1-copy");
      expect(copied.digest).toBe(digest);
      expect((await c.headManifest(`${registry.host}/slinky/slurmd:t1-copy`))?.digest).toBe(digest);
      expect(await c.listTags(`${registry.host}/slinky/slurmd`)).toEqual(expect.arrayContaining(["t1", "t1-copy"]));
    });

    it("keeps Docker manifests and OCI indexes byte-identical under a new tag, media type included", async () => {
      const c = client();
      const dockerRef = `${registry.host}/slinky/login:docker`;
      const dockerDigest = parseRef(await pushSynthetic(c, dockerRef, "docker", "docker")).digest as string;
      const dockerCopy = await c.copyManifest(`${registry.host}/slinky/login@${dockerDigest}`, "docker-copy");
      expect(dockerCopy.digest).toBe(dockerDigest);
      expect((await c.getManifest(`${registry.host}/slinky/login:docker-copy`)).mediaType).toBe(MEDIA_TYPES.dockerManifest);

      const indexRef = `${registry.host}/slinky/login:multi`;
      const indexDigest = await pushSyntheticIndex(c, indexRef, "multi");
      const indexCopy = await c.copyManifest(`${registry.host}/slinky/login@${indexDigest}`, "multi-copy");
      expect(indexCopy.digest).toBe(indexDigest);
      const back = await c.getManifest(`${registry.host}/slinky/login:multi-copy`);
      expect(back.mediaType).toBe(MEDIA_TYPES.ociIndex);
      const size = (i: ReturnType<typeof syntheticImage>) => i.config.length + i.layer.length;
      expect(await c.imageSize(back)).toBe(size(syntheticImage("multi-amd64")) + size(syntheticImage("multi-arm64")));
    });

    it("answers a missing tag with a not-found error naming the reference, without retrying", async () => {
      const c = client();
      const ref = `${registry.host}/slinky/slurmd:no-such-tag`;
      const error = await c.getManifest(ref).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RegistryNotFoundError);
      expect(String((error as Error).message)).toContain(ref);
      expect(String((error as Error).message)).toContain("MANIFEST_UNKNOWN");
      expect(await c.headManifest(ref)).toBeNull();
    });

    it("fails a wrong password at once with a clear error that does not contain the password", async () => {
      const bad = new RegistryClient({ username: USER.username, password: `${CANARY}-wrong`, plainHttp: true, logger: log, minBackoffMs: 20 });
      const before = tokens?.requests.length ?? 0;
      const error = await bad.getManifest(`${registry.host}/slinky/slurmd:t1`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RegistryAuthError);
      const text = String((error as Error).message);
      expect(text).toMatch(/authentication failed/);
      expect(text).toContain(`${registry.host}/slinky/slurmd:t1`);
      expect(text).toContain("ci-user");
      expect(text).not.toContain(CANARY);
      // One unauthenticated probe plus one attempt with the credentials: no retry storm.
      expect(bad.requests).toBeLessThanOrEqual(2);
      if (tokens) expect(tokens.requests.length - before).toBe(1);
    });

    // Token auth only (GitLab's, Docker Hub's and GHCR's flow).
    const itToken = mode === "token" ? it : () => {};

    itToken("fetches a fresh token once when the registry rejects a cached one", async () => {
      const c = client();
      await c.getManifest(`${registry.host}/slinky/slurmd:t1`);
      const before = tokens!.requests.length;
      // The next token issued (for another repository's scope) is already expired: the registry
      // rejects it, and the client fetches one fresh token and succeeds.
      tokens!.expiredTokens = 1;
      const manifest = await c.getManifest(`${registry.host}/slinky/login:docker`);
      expect(manifest.mediaType).toBe(MEDIA_TYPES.dockerManifest);
      expect(tokens!.requests.length - before).toBe(2);
    });

    itToken("a token without push rights fails the push at once, naming the scope", async () => {
      tokens!.grant = (user, _repository, actions) => (user === USER.username ? actions.filter((a) => a === "pull") : []);
      try {
        const c = client();
        const before = c.requests;
        const error = await c
          .putManifest(`${registry.host}/slinky/slurmd:no-push`, syntheticImage("copy").manifest, MEDIA_TYPES.ociManifest)
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(RegistryAuthError);
        expect((error as Error).message).toMatch(/repository:slinky\/slurmd:(pull,push|push,pull)/);
        expect(c.requests - before).toBeLessThanOrEqual(5);
      } finally {
        tokens!.grant = (_user, _repository, actions) => actions;
      }
    });

    it("caches credentials: a second manifest read costs one request", async () => {
      const c = client();
      await c.getManifest(`${registry.host}/slinky/slurmd:t1`);
      const after = c.requests;
      await c.getManifest(`${registry.host}/slinky/slurmd:t1`);
      expect(c.requests - after).toBe(1);
    });

    it("agrees with skopeo on the digest of a copied tag", async () => {
      // Async: in token mode the token server runs in this process.
      const { stdout } = await execFileAsync(
        "skopeo",
        ["inspect", "--raw", "--tls-verify=false", "--creds", `${USER.username}:${USER.password}`, `docker://${registry.host}/slinky/slurmd:t1-copy`],
        { encoding: "buffer", timeout: 30_000 },
      );
      expect(digestOf(stdout)).toBe(digestOf(syntheticImage("copy").manifest));
    });
  });
}

describe("registry client, registry gone", () => {
  it("retries a refused connection a bounded number of times, then names the reference and the cause", async () => {
    const port = await freePort();
    const c = new RegistryClient({ ...USER, plainHttp: true, minBackoffMs: 20, maxBackoffMs: 100, retries: 3 });
    const started = Date.now();
    const error = await c.getManifest(`127.0.0.1:${port}/slinky/slurmd:t1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryError);
    expect((error as RegistryError).transient).toBe(true);
    expect((error as Error).message).toBe(`get manifest 127.0.0.1:${port}/slinky/slurmd:t1: ECONNREFUSED talking to 127.0.0.1:${port}`);
    expect(c.requests).toBe(4);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
