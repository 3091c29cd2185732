/**
 * The pieces of the real-BuildKit image harness: the engine, the base image,
 * the Slurm source stand-in, a loopback file server, `docker` itself.
 * Everything runs on this machine; nothing here is a mock.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { basename, dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = join(HERE, "..", "..");
export const ENGINE_DIR = process.env.SLINKY_ENGINE_DIR ?? "/var/tmp/slinky-engine";
export const INPUTS_DIR = process.env.SLINKY_INPUTS_DIR ?? "/var/tmp/slinky-inputs";
export const DOCKER = process.env.SLINKY_DOCKER ?? "/usr/bin/docker";
export const BASE_IMAGE = process.env.SLINKY_BASE_IMAGE ?? "slinky-base/debian:trixie";
/** The same trixie base for linux/arm64, bootstrapped under emulation. */
export const BASE_IMAGE_ARM64 = process.env.SLINKY_BASE_IMAGE_ARM64 ?? "slinky-base/debian:trixie-arm64";
/** Repository prefix of every image the harness builds. */
export const IMAGE_PREFIX = "slinky-test";

/** Environment of every docker client call: the private engine, BuildKit on. */
export const dockerEnv: NodeJS.ProcessEnv = {
  ...process.env,
  DOCKER_HOST: `unix://${ENGINE_DIR}/docker.sock`,
  DOCKER_BUILDKIT: "1",
};

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface RunOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append stdout and stderr to this file. */
  logFile?: string;
  input?: string;
  /** Called with every chunk of stdout and stderr as it arrives (a benchmark's clock). */
  onOutput?: (text: string) => void;
}

/** Runs a command without a shell, bounded in time; never throws for a non-zero exit. */
export function run(cmd: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, {
      cwd: options.cwd ?? REPO,
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const log = options.logFile ? createWriteStream(options.logFile, { flags: "a" }) : undefined;
    let stdout = "";
    let stderr = "";
    const keep = (text: string, chunk: Buffer) => (text + chunk.toString("utf8")).slice(-2_000_000);
    child.stdout.on("data", (chunk: Buffer) => {
      stdout = keep(stdout, chunk);
      log?.write(chunk);
      options.onOutput?.(chunk.toString("utf8"));
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = keep(stderr, chunk);
      log?.write(chunk);
      options.onOutput?.(chunk.toString("utf8"));
    });
    const timer = setTimeout(() => {
      stderr += `\n[harness] ${cmd} timed out after ${options.timeoutMs} ms; killed\n`;
      child.kill("SIGKILL");
    }, options.timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      log?.end();
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      log?.end();
      resolve({ code, stdout, stderr, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
    });
    // A command that exits without reading its input must not fail the caller (EPIPE).
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

/** `docker ...` against the harness engine. */
export function docker(args: readonly string[], options: Partial<RunOptions> = {}): Promise<RunResult> {
  return run(DOCKER, args, { timeoutMs: 120_000, ...options, env: { ...dockerEnv, ...options.env } });
}

/** Like docker(), but throws with the output when the exit code is not 0. */
export async function dockerOk(args: readonly string[], options: Partial<RunOptions> = {}): Promise<string> {
  const result = await docker(args, options);
  if (result.code !== 0) {
    throw new Error(`docker ${args.join(" ")} exited ${result.code}:\n${result.stderr.slice(-4000)}`);
  }
  return result.stdout;
}

export interface Engine {
  /** Set when the harness started the daemon itself; only then does it stop it. */
  startedPid: number | null;
}

/** Reuses a daemon answering on the engine socket, or starts one (test/images/engine.sh). */
export async function startEngine(): Promise<Engine> {
  const result = await run(join(HERE, "engine.sh"), ["start"], { timeoutMs: 150_000 });
  if (result.code !== 0) throw new Error(`engine did not start:\n${result.stderr}`);
  const match = /^started (\d+)$/m.exec(result.stdout);
  return { startedPid: match ? Number(match[1]) : null };
}

/** Stops the daemon only if this harness started it (by its pid). */
export async function stopEngine(engine: Engine): Promise<void> {
  if (engine.startedPid === null || process.env.SLINKY_ENGINE_KEEP === "1") return;
  const result = await run(join(HERE, "engine.sh"), ["stop", String(engine.startedPid)], { timeoutMs: 90_000 });
  if (result.code !== 0) throw new Error(`engine did not stop:\n${result.stderr}`);
}

/**
 * The debootstrapped base image (made on first use); returns its image id.
 * `arch` (a Debian architecture, e.g. arm64) bootstraps another architecture
 * under emulation (test/emulation.sh) and imports the image as linux/<arch>.
 */
export async function ensureBase(name = BASE_IMAGE, arch?: string): Promise<string> {
  const result = await run(join(HERE, "base.sh"), arch ? [name, arch] : [name], { timeoutMs: 3_900_000, env: dockerEnv });
  if (result.code !== 0) throw new Error(`base image ${name} failed:\n${result.stderr}`);
  const id = result.stdout.trim().split("\n").pop() ?? "";
  if (!/^sha256:[0-9a-f]{64}$/.test(id)) throw new Error(`base image ${name}: unexpected id ${JSON.stringify(id)}`);
  return id;
}

/** The machine's Debian mirror, from apt's configuration (test/images/mirror.sh). */
export async function aptMirror(): Promise<string> {
  const result = await run(join(HERE, "mirror.sh"), [], { timeoutMs: 10_000 });
  if (result.code !== 0) throw new Error(result.stderr);
  return result.stdout.trim();
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** A Slurm source tarball the harness builds, with what checks it. */
export interface SlurmSource {
  /** Release line, e.g. 24.11. */
  readonly line: string;
  /** Patch release, e.g. 24.11.5. */
  readonly version: string;
  /** Name it is served under on loopback. */
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
  /** Where it comes from: the apt mirror's pool path, or a local file given by the user. */
  readonly poolPath?: string;
  readonly localPath?: string;
  /** True for the 24.11.5 stand-in, false for a tarball the user supplied. */
  readonly standIn: boolean;
}

/**
 * The Slurm source stand-in (FACTS.md §2): Debian trixie's slurm-wlm 24.11.5 orig
 * tarball, which is SchedMD's own tag archive slurm-24-11-5-1. Fetched once from
 * the apt mirror's pool into INPUTS_DIR and checked by size and sha256.
 */
export const SLURM_24_11_STANDIN: SlurmSource = {
  line: "24.11",
  version: "24.11.5",
  file: "slurm-wlm_24.11.5.orig.tar.gz",
  poolPath: "pool/main/s/slurm-wlm/slurm-wlm_24.11.5.orig.tar.gz",
  bytes: 9_907_599,
  sha256: "e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332",
  standIn: true,
};

/**
 * The source the harness builds: the 24.11.5 stand-in, or, where a real release is
 * at hand (a site with SchedMD's download, a CI runner), the tarball named by
 * SLINKY_SLURM_TARBALL with its version in SLINKY_SLURM_VERSION (e.g. 25.11.8): then
 * the checks that need Slurm 25.11 run for real instead of being skipped by name.
 * Its size and sha256 are read from the file and checked again when it is served.
 */
export function slurmSourceFrom(env: NodeJS.ProcessEnv): SlurmSource {
  const tarball = env.SLINKY_SLURM_TARBALL?.trim();
  const version = env.SLINKY_SLURM_VERSION?.trim();
  if (!tarball) {
    if (version) throw new Error("SLINKY_SLURM_VERSION needs SLINKY_SLURM_TARBALL: the Slurm source tarball of that version");
    return SLURM_24_11_STANDIN;
  }
  if (!version || !/^\d+\.\d+\.\d+$/.test(version)) {
    throw new Error(
      `SLINKY_SLURM_TARBALL needs SLINKY_SLURM_VERSION, the tarball's Slurm patch release as X.Y.Z (e.g. 25.11.8); got ${JSON.stringify(version ?? "")}`,
    );
  }
  if (!existsSync(tarball) || !statSync(tarball).isFile()) throw new Error(`SLINKY_SLURM_TARBALL: no such file: ${tarball}`);
  const bytes = readFileSync(tarball);
  return {
    line: version.split(".").slice(0, 2).join("."),
    version,
    file: basename(tarball),
    bytes: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    localPath: tarball,
    standIn: false,
  };
}

/** The Slurm source of this run (see slurmSourceFrom). */
export const SLURM_SOURCE: SlurmSource = slurmSourceFrom(process.env);

/** The path of this run's Slurm source, checked by size and sha256 (the stand-in fetched once from the apt mirror). */
export async function slurmSource(source: SlurmSource = SLURM_SOURCE): Promise<string> {
  const check = async (path: string) => statSync(path).size === source.bytes && (await sha256File(path)) === source.sha256;
  if (source.localPath) {
    if (!(await check(source.localPath))) throw new Error(`${source.localPath} changed since the run started (size or sha256)`);
    return source.localPath;
  }
  const target = join(INPUTS_DIR, source.file);
  if (existsSync(target) && (await check(target))) return target;
  mkdirSync(INPUTS_DIR, { recursive: true });
  const url = `${await aptMirror()}/${source.poolPath}`;
  const response = await fetch(url, { signal: AbortSignal.timeout(300_000) });
  if (!response.ok || !response.body) throw new Error(`GET ${source.poolPath} from the apt mirror: ${response.status}`);
  const partial = `${target}.partial`;
  const out = createWriteStream(partial);
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  if (!(await check(partial))) {
    rmSync(partial, { force: true });
    throw new Error(`${source.file} from the apt mirror does not match its pinned size and sha256`);
  }
  renameSync(partial, target);
  return target;
}

export interface FileServer {
  /** http://127.0.0.1:<port> (or the address given) */
  origin: string;
  /** URL of a file served under `name`. */
  url(name: string): string;
  close(): Promise<void>;
}

/**
 * Port of the loopback file server. A fixed port keeps the download URLs, hence
 * the build arguments and BuildKit's cache keys, the same from run to run; when it
 * is taken, an ephemeral port is used (and the fetch stages rerun).
 */
export const FILES_PORT = Number(process.env.SLINKY_FILES_PORT ?? 18765);

function listen(server: Server, port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE" && port !== 0) resolve(false);
      else reject(error);
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve(true);
    });
  });
}

/**
 * Serves exactly the given files (URL name -> local path) on 127.0.0.1 (or
 * `host`) at `port` (0: ephemeral; a taken port falls back to ephemeral);
 * anything else is 404. Builds reach it with --network host (the engine tests'
 * builds at the veth address `host`).
 */
export async function serveFiles(files: Record<string, string>, port = 0, host = "127.0.0.1"): Promise<FileServer> {
  const server: Server = createServer((request, response) => {
    // "a/./b" (apt's flat-repository file names) is "a/b"; anything not listed is 404.
    let name = "";
    try {
      name = posix.normalize(decodeURIComponent((request.url ?? "/").split("?")[0]!)).replace(/^\/+/, "");
    } catch {
      // malformed escapes: not a listed file
    }
    const path = Object.hasOwn(files, name) ? files[name] : undefined;
    if (!path || (request.method !== "GET" && request.method !== "HEAD")) {
      response.writeHead(404).end();
      return;
    }
    const size = statSync(path).size;
    response.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
    if (request.method === "HEAD") response.end();
    else createReadStream(path).pipe(response);
  });
  if (!(await listen(server, port, host))) await listen(server, 0, host);
  const origin = `http://${host}:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    url: (name) => `${origin}/${name.split("/").map(encodeURIComponent).join("/")}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
