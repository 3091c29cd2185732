/**
 * Real parts for the registry tests, all on 127.0.0.1 and all stopped by the
 * tests that start them:
 * - Debian's docker-registry (distribution 2.8) with a config of our own in a
 *   temporary directory, with htpasswd basic auth or token auth;
 * - a token server issuing RS256 JWTs the registry verifies (the key and a
 *   self-signed certificate are made at test time with openssl);
 * - tiny synthetic images (a real tar layer and config) pushed with the
 *   module's own client, no Docker needed.
 * The fault-injecting proxy in front of the registry is fault-proxy.ts.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { MEDIA_TYPES, type RegistryClient } from "../../src/registry/client.js";
import { digestOf } from "../../src/registry/reference.js";

export const REGISTRY_BIN = "/usr/bin/docker-registry";

/** A free TCP port on 127.0.0.1 (or `host`, an address of this machine's). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `server` listening on 127.0.0.1:`port`, its connections tracked; the
 * function returned closes it, connections that are still open included.
 */
export async function listenOnLoopback(server: Server, port: number): Promise<() => Promise<void>> {
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
}

export interface User {
  username: string;
  password: string;
}

export interface RunningRegistry {
  /** host:port of the registry itself. */
  host: string;
  port: number;
  pid: number;
  dir: string;
  logFile: string;
  stop(): Promise<void>;
}

export type RegistryAuth =
  | { kind: "none" }
  | { kind: "htpasswd"; users: User[] }
  | { kind: "token"; realm: string; service: string; issuer: string; certFile: string };

export interface RegistryListen {
  /** Default 127.0.0.1 (the engine tests: their veth address). */
  host?: string;
  /** Default a free port. */
  port?: number;
  /** Serve HTTPS with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
}

/** Start docker-registry (on 127.0.0.1 by default) with storage and config in a new temp dir. */
export async function startRegistry(auth: RegistryAuth, listen: RegistryListen = {}): Promise<RunningRegistry> {
  const dir = mkdtempSync(join(tmpdir(), "slinky-registry-"));
  const host = listen.host ?? "127.0.0.1";
  const port = listen.port || (await freePort(host));
  let authYaml: string;
  if (auth.kind === "none") {
    authYaml = "";
  } else if (auth.kind === "htpasswd") {
    const file = join(dir, "htpasswd");
    auth.users.forEach((user, index) => {
      // -i: the password comes on stdin, never on a command line.
      execFileSync("htpasswd", [index === 0 ? "-iBc" : "-iB", file, user.username], { input: user.password, stdio: ["pipe", "ignore", "pipe"] });
    });
    authYaml = `  htpasswd:\n    realm: slinky-test\n    path: ${file}\n`;
  } else {
    authYaml =
      `  token:\n    realm: ${auth.realm}\n    service: ${auth.service}\n    issuer: ${auth.issuer}\n` +
      `    rootcertbundle: ${auth.certFile}\n`;
  }
  const config = [
    "version: 0.1",
    "log:",
    "  level: info",
    "  accesslog:",
    "    disabled: false",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${join(dir, "data")}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${host}:${port}`,
    ...(listen.tls ? ["  tls:", `    certificate: ${listen.tls.certFile}`, `    key: ${listen.tls.keyFile}`] : []),
    `  secret: ${randomBytes(16).toString("hex")}`,
    ...(authYaml ? ["auth:", authYaml] : []),
  ].join("\n");
  const configFile = join(dir, "config.yml");
  writeFileSync(configFile, config);
  const logFile = join(dir, "registry.log");
  const out = openSync(logFile, "a");
  const child: ChildProcess = spawn(REGISTRY_BIN, ["serve", configFile], { stdio: ["ignore", out, out] });
  const pid = child.pid;
  if (pid === undefined) throw new Error("docker-registry did not start");
  let exited = false;
  // If the test process dies before stop(), do not leave the registry behind.
  const killOnExit = () => {
    if (!exited) process.kill(pid, "SIGKILL");
  };
  process.once("exit", killOnExit);
  child.once("exit", () => {
    exited = true;
    process.removeListener("exit", killOnExit);
  });
  const stop = async () => {
    if (!exited) {
      process.kill(pid, "SIGTERM");
      for (let i = 0; i < 50 && !exited; i++) await sleep(100);
      if (!exited) process.kill(pid, "SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready when /v2/ answers (401 with auth on); at most 10 s. Over HTTPS the
  // certificate's CA must be this process's (NODE_EXTRA_CA_CERTS).
  for (let i = 0; i < 100; i++) {
    if (exited) break;
    try {
      const res = await fetch(`${listen.tls ? "https" : "http"}://${host}:${port}/v2/`);
      if (res.status === 401 || res.status === 200) {
        return { host: `${host}:${port}`, port, pid, dir, logFile, stop };
      }
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  const log = readFileSync(logFile, "utf8").slice(-2000);
  await stop();
  throw new Error(`docker-registry did not become ready on ${host}:${port}:\n${log}`);
}

// ---- token server ------------------------------------------------------

/** RFC 4648 base32 without padding, as libtrust uses for key IDs. */
function base32(bytes: Buffer): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** libtrust's key ID (what distribution matches a JWT `kid` against): 240 bits of sha256(SPKI DER). */
export function libtrustKeyId(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: "spki", format: "der" });
  const encoded = base32(createHash("sha256").update(der).digest().subarray(0, 30));
  return encoded.match(/.{4}/g)?.join(":") ?? encoded;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");

export interface TokenRequest {
  account: string | null;
  scopes: string[];
  status: number;
}

/** A registry with one of the two auth modes, and its token server for "token". */
export async function startAuthRegistry(
  mode: "htpasswd" | "token",
  users: User[],
): Promise<{ registry: RunningRegistry; tokens?: RunningTokenServer }> {
  if (mode === "htpasswd") return { registry: await startRegistry({ kind: "htpasswd", users }) };
  const tokens = await startTokenServer(users);
  const { realm, service, issuer, certFile } = tokens;
  return { registry: await startRegistry({ kind: "token", realm, service, issuer, certFile }), tokens };
}

export interface RunningTokenServer {
  realm: string;
  service: string;
  issuer: string;
  certFile: string;
  /** Every request the token server answered. */
  requests: TokenRequest[];
  /** Actions a user gets per repository; default: everything asked for. */
  grant: (user: string, repository: string, actions: string[]) => string[];
  /** The next this-many tokens are already expired (a token the registry rejects early). */
  expiredTokens: number;
  stop(): Promise<void>;
}

/** A token service: checks basic credentials, issues RS256 JWTs signed by a key made now. */
export async function startTokenServer(users: User[]): Promise<RunningTokenServer> {
  const dir = mkdtempSync(join(tmpdir(), "slinky-token-"));
  const keyFile = join(dir, "key.pem");
  const certFile = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=slinky-test-token-issuer"],
    { stdio: "ignore" },
  );
  const privateKey = createPrivateKey(readFileSync(keyFile));
  const kid = libtrustKeyId(createPublicKey(privateKey).export({ type: "spki", format: "pem" }).toString());
  const port = await freePort();
  const service = "slinky-test-registry";
  const issuer = "slinky-test-issuer";
  const requests: TokenRequest[] = [];
  let close = async () => {};
  const state: RunningTokenServer = {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    grant: (_user, _repository, actions) => actions,
    expiredTokens: 0,
    stop: async () => {
      await close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", state.realm);
    const scopes = url.searchParams.getAll("scope");
    const header = req.headers.authorization ?? "";
    let account: string | null = null;
    let ok = header === "";
    if (header.startsWith("Basic ")) {
      const [user, ...rest] = Buffer.from(header.slice(6), "base64").toString("utf8").split(":");
      const password = rest.join(":");
      account = user ?? null;
      ok = users.some((u) => u.username === user && u.password === password);
    }
    if (!ok || url.pathname !== "/token" || url.searchParams.get("service") !== service) {
      requests.push({ account, scopes, status: 401 });
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ details: "invalid credentials" }));
      return;
    }
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(":");
      if (type !== "repository" || !name) return [];
      const granted = account ? state.grant(account, name, (actions ?? "").split(",")) : [];
      return [{ type, name, actions: granted }];
    });
    let now = Math.floor(Date.now() / 1000);
    if (state.expiredTokens > 0) {
      state.expiredTokens--;
      now -= 3600;
    }
    const head = b64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid }));
    const claims = b64url(
      JSON.stringify({ iss: issuer, sub: account ?? "", aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access }),
    );
    const signature = b64url(sign("sha256", Buffer.from(`${head}.${claims}`), privateKey));
    const token = `${head}.${claims}.${signature}`;
    requests.push({ account, scopes, status: 200 });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  close = await listenOnLoopback(server, port);
  return state;
}

// ---- synthetic images ----------------------------------------------------

/** A one-file ustar archive, deterministic (mtime 0, uid 0). */
export function tarOf(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  const put = (text: string, offset: number, length: number) => header.write(text, offset, length, "ascii");
  const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, "0");
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(content.length, 12), 124, 12);
  put(octal(0, 12), 136, 12);
  put("        ", 148, 8);
  put("0", 156, 1);
  put("ustar\u000000", 257, 8);
  let sum = 0;
  for (const byte of header) sum += byte;
  put(`${octal(sum, 7)}\u0000`, 148, 8);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

export interface SyntheticImage {
  config: Buffer;
  layer: Buffer;
  manifest: Buffer;
  mediaType: string;
}

/** A tiny image whose content (and so digest) is determined by `seed`. */
export function syntheticImage(
  seed: string,
  format: "oci" | "docker" = "oci",
  labels: Record<string, string> = {},
): SyntheticImage {
  const tar = tarOf("hello.txt", Buffer.from(`slinky test image ${seed}\n`));
  const layer = gzipSync(tar, { level: 9 });
  const docker = format === "docker";
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Labels: { "org.opencontainers.image.title": seed, ...labels } },
      rootfs: { type: "layers", diff_ids: [digestOf(tar)] },
    }),
  );
  const mediaType = docker ? MEDIA_TYPES.dockerManifest : MEDIA_TYPES.ociManifest;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: {
        mediaType: docker ? "application/vnd.docker.container.image.v1+json" : "application/vnd.oci.image.config.v1+json",
        digest: digestOf(config),
        size: config.length,
      },
      layers: [
        {
          mediaType: docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: digestOf(layer),
          size: layer.length,
        },
      ],
    }),
  );
  return { config, layer, manifest, mediaType };
}

/**
 * Push a synthetic image to `ref` (a tag reference) through the client, as
 * Dagger's Container.publish does in the engine; returns `ref@sha256:...`.
 */
export async function pushSynthetic(
  client: RegistryClient,
  ref: string,
  seed: string,
  format: "oci" | "docker" = "oci",
  labels: Record<string, string> = {},
): Promise<string> {
  const image = syntheticImage(seed, format, labels);
  await client.uploadBlob(ref, image.layer);
  await client.uploadBlob(ref, image.config);
  const digest = await client.putManifest(ref, image.manifest, image.mediaType);
  return `${ref}@${digest}`;
}

/** An OCI index over two synthetic images (pushed first); returns the index digest. */
export async function pushSyntheticIndex(client: RegistryClient, ref: string, seed: string): Promise<string> {
  const children: { mediaType: string; digest: string; size: number; platform: object }[] = [];
  const base = ref.slice(0, ref.lastIndexOf(":"));
  for (const arch of ["amd64", "arm64"]) {
    const image = syntheticImage(`${seed}-${arch}`);
    await client.uploadBlob(ref, image.layer);
    await client.uploadBlob(ref, image.config);
    const digest = await client.putManifest(`${base}@${digestOf(image.manifest)}`, image.manifest, image.mediaType);
    children.push({ mediaType: image.mediaType, digest, size: image.manifest.length, platform: { architecture: arch, os: "linux" } });
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: children }));
  return client.putManifest(ref, index, MEDIA_TYPES.ociIndex);
}

/** Collects pino's JSON lines in memory. */
export class LogCapture {
  readonly lines: string[] = [];
  readonly stream = {
    write: (chunk: string) => {
      this.lines.push(...chunk.toString().split("\n").filter(Boolean));
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  text(): string {
    return this.lines.join("\n");
  }
}
