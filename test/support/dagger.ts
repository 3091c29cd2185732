/**
 * Looking at the Dagger surface without an engine, the way the engine does:
 * the SDK's own module scanner over src/, and the lazy query a Dagger object
 * would send.
 */
import { copyFileSync, mkdtempSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const SRC = join(import.meta.dirname, "..", "..", "src");

/**
 * Every .ts file under src/, recursively, as Dagger 0.21's TypeScript runtime
 * loads them (subfolders included; the main object is found by class name).
 */
export function srcFiles(): string[] {
  return (readdirSync(SRC, { recursive: true, encoding: "utf8" }) as string[])
    .filter((file) => file.endsWith(".ts"))
    .sort()
    .map((file) => join(SRC, file));
}

export interface ScannedArgument {
  name: string;
  description: string;
  type: { kind: string; name?: string };
  isOptional: boolean;
  defaultValue?: unknown;
  defaultPath?: string;
}
export interface ScannedFunction {
  name: string;
  description: string;
  arguments: Record<string, ScannedArgument>;
  returnType: { kind: string; name?: string };
  cache?: string;
}
export interface ScannedObject {
  name: string;
  description: string;
  constructor: { arguments: Record<string, ScannedArgument> };
  methods: Record<string, ScannedFunction>;
}

/**
 * Runs the SDK's module scanner over every .ts file under src/, as the engine's
 * runtime does. The engine scans the generated sdk/ client.gen.ts beside the
 * module; outside it the npm package's declarations stand in for that file.
 */
export async function scanModule(): Promise<{ description: string; objects: Record<string, ScannedObject> }> {
  const sdkEntry = createRequire(import.meta.url).resolve("@dagger.io/dagger");
  const sdkDist = dirname(sdkEntry);
  const clientGen = join(mkdtempSync(join(tmpdir(), "dagger-scan-")), "client.gen.ts");
  copyFileSync(join(sdkDist, "api", "client.gen.d.ts"), clientGen);
  const files = srcFiles();
  const introspector = pathToFileURL(join(sdkDist, "module", "introspector", "index.js")).href;
  const { scan } = (await import(introspector)) as {
    scan: (files: string[], name: string, load: boolean) => Promise<unknown>;
  };
  const scanned = await scan([...files, clientGen], "slinky-containers", false);
  return JSON.parse(JSON.stringify(scanned, (key, value) => (key === "ast" || key === "userModule" ? undefined : value)));
}

/** How the CLI names a function or argument: camelCase to kebab-case (buildAll: build-all, slurmVersion: --slurm-version). */
export const cliName = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export interface QueryStep {
  operation: string;
  args?: Record<string, unknown>;
}

/** The lazy query a Dagger object would send to the engine. */
export function queryOf(object: unknown): QueryStep[] {
  const context = (object as { _ctx?: { _queryTree?: QueryStep[] } })._ctx;
  if (!context?._queryTree) throw new Error("not a lazy Dagger object");
  return context._queryTree;
}
