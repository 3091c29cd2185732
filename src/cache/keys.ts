/**
 * Build-cache keys as data. A key is a sha256 over everything that determines
 * a target of a Dockerfile: the text of every stage in its ancestry (its FROM
 * chain and every stage it copies or mounts from), the content of every
 * build-context file those stages copy or bind-mount, the values of the build
 * arguments they declare, the base image's digest, the platform, the build
 * machine's platform and base image where stages run on it (FROM
 * --platform=$BUILDPLATFORM: the package set, cross-compiled or native), and
 * for the images the package set's key and the image's own labels. Nothing
 * else: a stage, a file or an argument the target does not use does not change it.
 *
 * Pure: the Dockerfile's text and a reader of the context come in; the
 * Dagger side reads a Directory, the harness the file system.
 */
import { createHash } from "node:crypto";
import { PACKAGES_TARGET } from "../core/catalog.js";
import type { Manifest } from "../core/manifest.js";
import { DEFAULT_PLATFORM, type PlatformName } from "../core/platform.js";
import { imageLabels, type Resolved } from "../build/plan.js";
import { noTrailingSlash } from "../core/inputs.js";

/** Bumped when what goes into a key changes, so old entries stop matching. */
export const KEY_VERSION = "slinky-build-cache/1";
/** The platform a key is for when none is named. */
export const PLATFORM: PlatformName = DEFAULT_PLATFORM;
/** Build arguments that name the base image: the key takes its digest instead. */
export const BASE_ARGS = new Set(["BASE_IMAGE"]);
/**
 * The build machine's base image (Dockerfile.packages; defaults to BASE_IMAGE):
 * the key takes its digest, buildBaseDigest (baseDigest when it is not set).
 */
export const BUILD_BASE_ARG = "BUILD_BASE_IMAGE";
/** BuildKit's automatic platform arguments of the target: the platform part covers them. */
const TARGET_PLATFORM_ARGS = new Set(["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"]);
/** ... and of the build machine: the buildPlatform part covers them. */
const BUILD_PLATFORM_ARGS = new Set(["BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"]);
/** Context directory the images' Dockerfile takes the package set from; keyed by the package set's key. */
export const PACKAGES_DIR = "packages";

export interface Stage {
  readonly name: string;
  /** FROM's argument as written (a stage name, an image, or `${BASE_IMAGE}`). */
  readonly from: string;
  /** Every instruction of the stage, continuation lines joined, comments dropped. */
  readonly instructions: readonly string[];
  /** ARG names the stage declares. */
  readonly args: readonly string[];
  /** Build-context paths the stage copies or bind-mounts. */
  readonly sources: readonly string[];
  /** Other stages it copies or mounts from (and its FROM, when that is a stage). */
  readonly needs: readonly string[];
}

export interface ParsedDockerfile {
  /** ARG lines before the first FROM, by name. */
  readonly globalArgs: ReadonlyMap<string, string>;
  readonly stages: readonly Stage[];
}

export class DockerfileParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DockerfileParseError";
  }
}

/** Logical instructions: continuation lines joined, comment and blank lines dropped. */
export function instructionsOf(text: string): string[] {
  const out: string[] = [];
  let current = "";
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("#") || (line === "" && current === "")) continue;
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    current += line;
    if (current.trim() !== "") out.push(current.trim().replace(/\s+/g, " "));
    current = "";
  }
  if (current.trim() !== "") out.push(current.trim());
  return out;
}

function words(line: string): string[] {
  return line.split(" ").filter(Boolean);
}

/** A RUN `--mount=` flag's options by name; a bare option (`rw`) reads as `"true"`. */
function mountOptions(flag: string): Record<string, string> {
  return Object.fromEntries(
    flag
      .slice("--mount=".length)
      .split(",")
      .map((kv) => {
        const at = kv.indexOf("=");
        return at < 0 ? [kv, "true"] : [kv.slice(0, at), kv.slice(at + 1)];
      }),
  );
}

/** The options of an instruction's bind mounts (`type=bind`, BuildKit's default type). */
export function bindMounts(instruction: string): Record<string, string>[] {
  return words(instruction)
    .filter((w) => w.startsWith("--mount="))
    .map(mountOptions)
    .filter((options) => (options.type ?? "bind") === "bind");
}

/** Splits a Dockerfile into stages with what each one uses. */
export function parseDockerfile(text: string): ParsedDockerfile {
  const globalArgs = new Map<string, string>();
  const stages: { name: string; from: string; instructions: string[]; args: string[]; sources: string[]; needs: string[] }[] = [];
  for (const instruction of instructionsOf(text)) {
    const [keyword = "", ...rest] = words(instruction);
    const op = keyword.toUpperCase();
    const stage = stages.at(-1);
    if (op === "FROM") {
      const args = rest.filter((w) => !w.startsWith("--"));
      const from = args[0];
      if (!from) throw new DockerfileParseError(`FROM without an image: ${instruction}`);
      const name = args.length >= 3 && args[1]?.toUpperCase() === "AS" ? (args[2] as string) : `#${stages.length}`;
      const known = stages.some((s) => s.name === from);
      stages.push({ name, from, instructions: [instruction], args: [], sources: [], needs: known ? [from] : [] });
      continue;
    }
    if (!stage) {
      if (op === "ARG") {
        const [name = "", value = ""] = (rest[0] ?? "").split(/=(.*)/s);
        globalArgs.set(name, value);
        continue;
      }
      throw new DockerfileParseError(`${op} before the first FROM: ${instruction}`);
    }
    stage.instructions.push(instruction);
    if (op === "ARG") {
      for (const word of rest) stage.args.push(word.split("=")[0] as string);
    } else if (op === "COPY" || op === "ADD") {
      const flags = rest.filter((w) => w.startsWith("--"));
      const paths = rest.filter((w) => !w.startsWith("--"));
      if (paths.length < 2) throw new DockerfileParseError(`${op} needs a source and a destination: ${instruction}`);
      const fromFlag = flags.find((f) => f.startsWith("--from="));
      if (fromFlag) {
        const from = fromFlag.slice("--from=".length);
        if (!stages.some((s) => s.name === from)) {
          throw new DockerfileParseError(`${op} --from=${from} names no earlier stage (images are not keyed): ${instruction}`);
        }
        stage.needs.push(from);
      } else {
        stage.sources.push(...paths.slice(0, -1));
      }
    } else if (op === "RUN") {
      for (const options of bindMounts(instruction)) {
        if (options.from) {
          if (!stages.some((s) => s.name === options.from)) {
            throw new DockerfileParseError(`--mount from=${options.from} names no earlier stage: ${instruction}`);
          }
          stage.needs.push(options.from);
        } else {
          stage.sources.push(options.source ?? options.src ?? ".");
        }
      }
    }
  }
  for (const source of stages.flatMap((s) => s.sources)) {
    if (/[*?[]/.test(source)) throw new DockerfileParseError(`context source ${source}: wildcards are not keyed; name the files`);
  }
  return { globalArgs, stages };
}

/** The stages a target is built from, target last, each once. */
export function ancestry(parsed: ParsedDockerfile, target: string): Stage[] {
  const byName = new Map(parsed.stages.map((s) => [s.name, s]));
  if (!byName.has(target)) {
    throw new DockerfileParseError(`no stage named ${target}: stages are ${parsed.stages.map((s) => s.name).join(", ")}`);
  }
  const seen = new Set<string>();
  const order: Stage[] = [];
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const stage = byName.get(name) as Stage;
    for (const need of stage.needs) visit(need);
    order.push(stage);
  };
  visit(target);
  return order;
}

/** What a key reads from the build context. */
export interface ContextReader {
  /** Regular files at or beneath `source` (a file or directory path relative to the context), relative paths. */
  files(source: string): Promise<string[]>;
  read(path: string): Promise<Uint8Array>;
}

export interface KeyInput {
  /** The Dockerfile's name, e.g. Dockerfile.packages (part of the key). */
  dockerfileName: string;
  dockerfile: string;
  target: string;
  context: ContextReader;
  buildArgs: Readonly<Record<string, string>>;
  /** The base image's digest (sha256:...), or its image id where no registry has it. */
  baseDigest: string;
  /**
   * The build machine's base image digest, where BUILD_BASE_IMAGE names another
   * image than BASE_IMAGE (one platform per name, docker 20.10's image store);
   * baseDigest otherwise (an index digest serves both platforms).
   */
  buildBaseDigest?: string;
  platform?: string;
  /** The build machine's platform (the engine's); default linux/amd64. */
  buildPlatform?: string;
  /** The package set's key: needed when the target's stages use packages/ from the context. */
  packagesKey?: string;
  /** The image's labels that do not vary per run (no revision or created). */
  labels?: Readonly<Record<string, string>>;
}

export interface Key {
  /** sha256 hex over the parts. */
  readonly key: string;
  /** Each input's own sha256 hex, by name (stage:…, file:…, arg:…, base, packages, label:…): what changed. */
  readonly parts: Readonly<Record<string, string>>;
}

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

const normalize = (path: string) => noTrailingSlash(path.replace(/^\.\//, ""));

/** Computes a target's key and the parts it is made of. */
export async function computeKey(input: KeyInput): Promise<Key> {
  const parsed = parseDockerfile(input.dockerfile);
  const stages = ancestry(parsed, input.target);
  const parts: Record<string, string> = {
    version: sha256(KEY_VERSION),
    platform: sha256(input.platform ?? PLATFORM),
    target: sha256(`${input.dockerfileName}:${input.target}`),
  };
  const argNames = new Set<string>();
  let usesBase = false;
  let usesBuildBase = false;
  let usesBuildPlatform = false;
  const refersTo = (text: string, name: string) => new RegExp(`\\$(\\{${name}\\}|${name}(?![A-Za-z0-9_]))`).test(text);
  for (const stage of stages) {
    parts[`stage:${stage.name}`] = sha256(stage.instructions.join("\n"));
    for (const name of stage.args) argNames.add(name);
    // FROM --platform=$BUILDPLATFORM (the FROM instruction is the stage's first).
    if ([...BUILD_PLATFORM_ARGS].some((name) => refersTo(stage.instructions[0] ?? "", name))) usesBuildPlatform = true;
    for (const [name] of parsed.globalArgs) {
      if (refersTo(stage.from, name)) {
        if (BASE_ARGS.has(name)) usesBase = true;
        else if (name === BUILD_BASE_ARG) usesBuildBase = true;
        else argNames.add(name);
      }
    }
  }
  for (const name of [...argNames].sort()) {
    if (BASE_ARGS.has(name)) {
      usesBase = true;
      continue;
    }
    if (name === BUILD_BASE_ARG) {
      usesBuildBase = true;
      continue;
    }
    if (TARGET_PLATFORM_ARGS.has(name)) continue;
    if (BUILD_PLATFORM_ARGS.has(name)) {
      usesBuildPlatform = true;
      continue;
    }
    const value = input.buildArgs[name] ?? parsed.globalArgs.get(name) ?? "";
    parts[`arg:${name}`] = sha256(value);
  }
  const digest = (value: string, what: string) => {
    if (!/^sha256:[0-9a-f]{64}$/.test(value)) {
      throw new Error(`${what} ${JSON.stringify(value)} is not a sha256 digest: the key needs the base image by digest`);
    }
    return sha256(value);
  };
  if (usesBase) parts.base = digest(input.baseDigest, "base digest");
  if (usesBuildBase) {
    const own = input.buildArgs[BUILD_BASE_ARG];
    if (own !== undefined && own !== input.buildArgs.BASE_IMAGE && input.buildBaseDigest === undefined) {
      throw new Error(`${BUILD_BASE_ARG} names ${JSON.stringify(own)}, not BASE_IMAGE: the key needs its digest (buildBaseDigest)`);
    }
    parts.buildBase = digest(input.buildBaseDigest ?? input.baseDigest, "build base digest");
  }
  if (usesBuildPlatform) parts.buildPlatform = sha256(input.buildPlatform ?? PLATFORM);
  const sources = [...new Set(stages.flatMap((s) => s.sources).map(normalize))].sort();
  let usesPackages = false;
  for (const source of sources) {
    if (source === PACKAGES_DIR || source.startsWith(`${PACKAGES_DIR}/`) || source === "" || source === ".") {
      if (source === "" || source === ".") throw new Error("a stage uses the whole build context: its key would include the package set's files");
      usesPackages = true;
      continue;
    }
    const files = await input.context.files(source);
    if (files.length === 0) throw new Error(`context source ${source} of ${input.dockerfileName} has no files`);
    for (const file of files.map(normalize)) {
      if (!(`file:${file}` in parts)) parts[`file:${file}`] = sha256(await input.context.read(file));
    }
  }
  if (usesPackages) {
    if (!input.packagesKey) throw new Error(`${input.target} uses ${PACKAGES_DIR}/ from the context: its key needs the package set's key`);
    parts.packages = sha256(input.packagesKey);
  }
  for (const [name, value] of Object.entries(input.labels ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    parts[`label:${name}`] = sha256(value);
  }
  const sorted = Object.keys(parts).sort();
  const key = sha256(sorted.map((name) => `${name}=${parts[name]}`).join("\n"));
  return { key, parts: Object.fromEntries(sorted.map((name) => [name, parts[name] as string])) };
}

/** Names of the parts that differ between two keys' parts (added, removed or changed), sorted. */
export function changedParts(before: Readonly<Record<string, string>>, after: Readonly<Record<string, string>>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((name) => before[name] !== after[name]).sort();
}

/** Parts as a compact label value: name=first 16 hex of each, one per line order. */
export function encodeParts(parts: Readonly<Record<string, string>>): string {
  return Object.entries(parts)
    .map(([name, hash]) => `${name}=${hash.slice(0, 16)}`)
    .join(";");
}

export function decodeParts(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of value.split(";")) {
    const at = entry.lastIndexOf("=");
    if (at > 0) out[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return out;
}

/** Parts cut to what encodeParts keeps, to compare with decoded labels. */
export function shortParts(parts: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(parts).map(([name, hash]) => [name, hash.slice(0, 16)]));
}

/** The keys of a run: the package set's, and each image's. */
export interface RunKeys {
  readonly baseDigest: string;
  readonly packages: Key;
  readonly images: Readonly<Record<string, Key>>;
}

export interface RunKeyInput {
  manifest: Manifest;
  resolved: Resolved;
  /** The recipe folder (dockerfiles/<family>): both Dockerfiles and their context files. */
  context: ContextReader;
  /** Build arguments as the build gets them (plan.buildArgs, BASE_IMAGE by digest where resolved). */
  buildArgs: Readonly<Record<string, string>>;
  baseDigest: string;
  /** The build machine's base image digest, when BUILD_BASE_IMAGE is set to another image (see KeyInput). */
  buildBaseDigest?: string;
  /** The platform built (its build arguments are buildArgs); default linux/amd64. */
  platform?: PlatformName;
  /** The engine's own platform, where the package set compiles; default linux/amd64. */
  buildPlatform?: string;
}

/** Keys of the package set and of every image of the run, from the same inputs the build gets. */
export async function runKeys(input: RunKeyInput): Promise<RunKeys> {
  const decoder = new TextDecoder();
  const read = async (name: string) => decoder.decode(await input.context.read(name));
  const [packagesFile, imagesFile] = await Promise.all([read("Dockerfile.packages"), read("Dockerfile")]);
  // What every key of the run is computed from besides its own Dockerfile and target.
  const shared = {
    context: input.context,
    buildArgs: input.buildArgs,
    baseDigest: input.baseDigest,
    ...(input.buildBaseDigest === undefined ? {} : { buildBaseDigest: input.buildBaseDigest }),
    platform: input.platform ?? PLATFORM,
    buildPlatform: input.buildPlatform ?? PLATFORM,
  };
  const packages = await computeKey({ ...shared, dockerfileName: "Dockerfile.packages", dockerfile: packagesFile, target: PACKAGES_TARGET });
  const images: Record<string, Key> = {};
  for (const image of input.resolved.images) {
    images[image.name] = await computeKey({
      ...shared,
      dockerfileName: "Dockerfile",
      dockerfile: imagesFile,
      target: image.target,
      packagesKey: packages.key,
      labels: imageLabels(input.manifest, input.resolved, image),
    });
  }
  return { baseDigest: input.baseDigest, packages, images };
}
