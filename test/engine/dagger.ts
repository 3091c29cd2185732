/**
 * The real Dagger engine of the engine tests: where its binaries are, why they
 * are not there (the Go module proxy's refusal, recorded by build-dagger.sh),
 * starting and stopping it (engine.sh), and the environment under which the
 * TypeScript SDK connects to it as `dagger call` would in client mode.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../images/harness.js";

const HERE = import.meta.dirname;
export const DAGGER_DIR = process.env.SLINKY_DAGGER_DIR ?? "/var/tmp/slinky-dagger";
/** engine, dagger, dialstdio, dnsname, init: built by build-dagger.sh (or given, e.g. built by hand). */
export const DAGGER_BIN = process.env.SLINKY_DAGGER_BIN ?? join(DAGGER_DIR, "bin");
/** This machine's end of the engine namespace's veth pair: servers the engine's builds reach listen here. */
export const HOST_ADDR = "198.18.87.1";
export const SOCKET = `unix://${join(DAGGER_DIR, "run", "engine.sock")}`;
/** The test registry's port on HOST_ADDR (docker.io's mirror in the engine's configuration). */
export const REGISTRY_PORT = Number(process.env.SLINKY_DAGGER_REGISTRY_PORT ?? 15000);

const BINARIES = ["engine", "dagger", "dialstdio", "dnsname", "init"];

/** Why no engine can run here, or undefined when its binaries are present. */
export function engineUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the engine tests need root (network and mount namespaces)";
  const missing = BINARIES.filter((name) => !existsSync(join(DAGGER_BIN, name)));
  if (missing.length === 0) return undefined;
  const why = join(DAGGER_BIN, "UNAVAILABLE");
  const reason = existsSync(why) ? readFileSync(why, "utf8").trim() : `${missing.join(", ")} missing from ${DAGGER_BIN}`;
  // The refusals quote the proxy's URLs: its host name stays out of every log.
  return reason.replace(/https?:\/\/[^/\s'"]+/g, "<proxy>");
}

/**
 * Module mode (`dagger call`, the engine's TypeScript runtime) needs the
 * engine's builtin SDK images, which an engine built from source lacks, and the
 * base images the runtime pulls from docker.io. Where they are at hand (made by
 * hand: docs/testing.md), SLINKY_DAGGER_SDK names a folder holding them:
 *   content/blobs/sha256/…  the SDK images' content, put in the engine's builtin content store
 *   sdk.env                 DAGGER_TYPESCRIPT_SDK_MANIFEST_DIGEST=… and DAGGER_GO_SDK_MANIFEST_DIGEST=…
 *   mirror/<repo>@<tag>/    OCI layouts pushed to docker.io's mirror ('+' for '/': library+node@24.13.1-alpine)
 */
export const DAGGER_SDK = process.env.SLINKY_DAGGER_SDK;
const SDK_VARIABLES = ["DAGGER_TYPESCRIPT_SDK_MANIFEST_DIGEST", "DAGGER_GO_SDK_MANIFEST_DIGEST"];

/** Why module mode cannot run here, or undefined when it can. */
export function moduleModeUnavailable(): string | undefined {
  const engine = engineUnavailable();
  if (engine !== undefined) return engine;
  if (!DAGGER_SDK) return "the engine built from source has no builtin TypeScript and Go SDK images: SLINKY_DAGGER_SDK names them where they are at hand";
  const variables = Object.keys(sdkVariables());
  const missing = SDK_VARIABLES.filter((name) => !variables.includes(name));
  if (!existsSync(join(DAGGER_SDK, "content", "blobs", "sha256")) || missing.length > 0) {
    return `SLINKY_DAGGER_SDK=${DAGGER_SDK} lacks content/blobs/sha256 or ${missing.join(", ") || "nothing"} in sdk.env`;
  }
  return undefined;
}

/** The SDK digests of SLINKY_DAGGER_SDK/sdk.env, for the engine's environment. */
function sdkVariables(): Record<string, string> {
  const file = DAGGER_SDK ? join(DAGGER_SDK, "sdk.env") : "";
  if (!file || !existsSync(file)) return {};
  const pairs = readFileSync(file, "utf8").split("\n").map((l) => /^([A-Z_]+)=(sha256:[0-9a-f]{64})$/.exec(l.trim())).filter((m) => m !== null);
  return Object.fromEntries(pairs.filter((m) => SDK_VARIABLES.includes(m[1]!)).map((m) => [m[1]!, m[2]!]));
}

/** The OCI layouts of SLINKY_DAGGER_SDK/mirror and the docker.io references they are pushed as. */
export function sdkMirrorImages(): { layout: string; ref: string }[] {
  const dir = DAGGER_SDK ? join(DAGGER_SDK, "mirror") : "";
  if (!dir || !existsSync(dir)) return [];
  return readdirSync(dir).map((name) => ({ layout: join(dir, name), ref: name.replace(/\+/g, "/").replace("@", ":") }));
}

/** The version the binaries were built as (build-dagger.sh's VERSION, or `dagger version`). */
export async function daggerVersion(): Promise<string> {
  const file = join(DAGGER_BIN, "VERSION");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const r = await run(join(DAGGER_BIN, "dagger"), ["version"], { timeoutMs: 30_000, env: { ...process.env, ...clientEnv() } });
  return /^dagger (v\S+)/.exec(r.stdout)?.[1] ?? "unknown";
}

export interface EngineOptions {
  /** host:port of the registry that docker.io's mirror points at (plain HTTP). */
  registryMirror: string;
  /** host:port of an HTTPS registry the engine trusts through `ca` (a PEM file). */
  tlsRegistry?: { host: string; ca: string };
}

/** Starts the engine (engine.sh start); its state stays under DAGGER_DIR/state unless `fresh`. */
export async function startDaggerEngine(options: EngineOptions & { fresh?: boolean }): Promise<number> {
  const started = Date.now();
  const env = {
    ...process.env,
    SLINKY_DAGGER_BIN: DAGGER_BIN,
    SLINKY_DAGGER_DIR: DAGGER_DIR,
    SLINKY_DAGGER_MIRROR: options.registryMirror,
    ...(options.tlsRegistry ? { SLINKY_DAGGER_TLS_REGISTRY: options.tlsRegistry.host, SLINKY_DAGGER_REGISTRY_CA: options.tlsRegistry.ca } : {}),
    ...(options.fresh ? { SLINKY_DAGGER_FRESH: "1" } : {}),
    ...(DAGGER_SDK ? { SLINKY_DAGGER_SDK_CONTENT: join(DAGGER_SDK, "content"), ...sdkVariables() } : {}),
  };
  const r = await run(join(HERE, "engine.sh"), ["start"], { timeoutMs: 10 * 60_000, env });
  if (r.code !== 0) throw new Error(`the Dagger engine did not start:\n${r.stderr}`);
  return (Date.now() - started) / 1000;
}

export async function stopDaggerEngine(): Promise<void> {
  const r = await run(join(HERE, "engine.sh"), ["stop"], { timeoutMs: 2 * 60_000, env: { ...process.env, SLINKY_DAGGER_DIR: DAGGER_DIR } });
  if (r.code !== 0) throw new Error(`the Dagger engine did not stop:\n${r.stderr}`);
}

/** The TypeScript SDK's connection to this engine through this CLI (client mode). */
export function clientEnv(): Record<string, string> {
  return {
    _EXPERIMENTAL_DAGGER_CLI_BIN: join(DAGGER_BIN, "dagger"),
    _EXPERIMENTAL_DAGGER_RUNNER_HOST: SOCKET,
    DAGGER_NO_NAG: "1",
    DO_NOT_TRACK: "1",
  };
}
