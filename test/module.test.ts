/**
 * What the engine's TypeScript runtime does with this module in module mode
 * (`dagger call`), checked without an engine: the files `dagger.json` lets it
 * upload, and the package.json it installs. The runtime's steps are Dagger
 * v0.21.8's (sdk/typescript/runtime: tsutils/package_json_updator.go,
 * runtime_node.go), read in its source and run by hand (docs/testing.md).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { srcFiles } from "./support/dagger.js";

const ROOT = join(import.meta.dirname, "..");
const json = (file: string) => JSON.parse(readFileSync(join(ROOT, file), "utf8"));
const tracked = () => execFileSync("git", ["ls-files"], { cwd: ROOT, encoding: "utf8" }).split("\n").filter(Boolean);

/** The module source the engine uploads: every file, less what an `!pattern` of dagger.json's `include` leaves out. */
function moduleSource(files: string[], include: string[]): string[] {
  // A pattern names a path and everything under it; "**/" any folders before it, "*" any name (dot files too).
  const regex = (pattern: string) =>
    new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*\//g, "\u0000").replace(/\*/g, "[^/]*").replace(/\u0000/g, "(?:.*/)?")}(?:/.*)?$`);
  const kept = (file: string, pattern: string) => !regex(pattern).test(file);
  return include.reduce((left, entry) => (entry.startsWith("!") ? left.filter((f) => kept(f, entry.slice(1))) : left), files);
}

/** The runtime's update of package.json before `npm install --omit=dev`. */
function runtimePackageJson(pkg: { dependencies?: Record<string, string>; devDependencies?: Record<string, string> }) {
  const dependencies: Record<string, string> = { typescript: "5.9.3", ...pkg.dependencies };
  delete dependencies["@dagger.io/dagger"];
  const devDependencies: Record<string, string> = { ...pkg.devDependencies };
  delete devDependencies["@dagger.io/dagger"];
  return { ...pkg, type: "module", dependencies, devDependencies };
}

/** Bare package names src/ imports (node: builtins aside). */
function importedPackages(): string[] {
  const patterns = [/^\s*(?:import|export)\b[^;]*?\bfrom\s+["']([^."'][^"']*)["']/gm, /^\s*import\s+["']([^."'][^"']*)["']/gm, /\bimport\(\s*["']([^."'][^"']*)["']\s*\)/g];
  const names = srcFiles().flatMap((file) => patterns.flatMap((re) => [...readFileSync(file, "utf8").matchAll(re)].map((m) => m[1]!)));
  const packageOf = (spec: string) => (spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
  return [...new Set(names.filter((n) => !n.startsWith("node:")).map(packageOf))].sort();
}

describe("the module source dagger.json uploads", () => {
  const config = json("dagger.json") as { source: string; include: string[] };
  const uploaded = new Set(moduleSource(tracked(), config.include));

  it("holds src/, package.json, its lock and tsconfig.json, and no tests, recipes or CI files", () => {
    expect(config.source).toBe(".");
    for (const file of srcFiles()) expect(uploaded.has(relative(ROOT, file)), relative(ROOT, file)).toBe(true);
    for (const file of ["package.json", "package-lock.json", "tsconfig.json", "dagger.json"]) expect(uploaded.has(file), file).toBe(true);
    const stray = [...uploaded].filter((f) => /^(test|dockerfiles|ci|\.ci|docs|examples)\//.test(f) || f === "README.md");
    expect(stray).toEqual([]);
    // What a user's clone holds untracked: the dependencies and the tests' output stay home too.
    expect(moduleSource(["node_modules/zod/index.js", "out/images-report.json", "src/index.ts"], config.include)).toEqual(["src/index.ts"]);
  });

  it("holds every file src/ reads beside itself at run time (new URL(…, import.meta.url))", () => {
    const read = srcFiles().flatMap((file) =>
      [...readFileSync(file, "utf8").matchAll(/new URL\("([^"]+)", import\.meta\.url\)/g)].map((m) => relative(ROOT, resolve(dirname(file), m[1]!))),
    );
    expect(read).toEqual(expect.arrayContaining(["manifest.json", "package.json"]));
    expect(read.filter((f) => !uploaded.has(f))).toEqual([]);
  });

  it("leaves out dockerfiles/, which the constructor takes from the context directory (defaultPath /dockerfiles)", () => {
    expect([...uploaded].some((f) => f.startsWith("dockerfiles/"))).toBe(false);
    expect(readFileSync(join(ROOT, "src", "index.ts"), "utf8")).toMatch(/@argument\(\{ defaultPath: "\/dockerfiles" \}\) dockerfiles: Directory/);
  });

  it("models include as Dagger does (the check can fail)", () => {
    expect(moduleSource(["a/b.ts", "test/x.ts", "README.md"], ["!test", "!README.md"])).toEqual(["a/b.ts"]);
    expect(moduleSource(["x/node_modules/y.js", "z.ts"], ["!**/node_modules"])).toEqual(["z.ts"]);
  });
});

describe("the package.json the runtime installs (npm install --omit=dev)", () => {
  const pkg = json("package.json");
  const installed = runtimePackageJson(pkg);

  it("has every package src/ imports at run time in dependencies (the SDK's own aside: the runtime supplies it)", () => {
    const needed = importedPackages().filter((p) => p !== "@dagger.io/dagger");
    expect(needed).toEqual(expect.arrayContaining(["p-limit", "pino", "zod"]));
    expect(needed.filter((p) => !(p in installed.dependencies))).toEqual([]);
  });

  it("has typescript in dependencies and not in devDependencies: the SDK's library imports it, and --omit=dev removes a package devDependencies lists", () => {
    // Seen by hand on v0.21.8: with typescript in devDependencies only, npm removed the runtime's
    // typescript and the module failed to load ("Cannot find package 'typescript' imported from /src/sdk/core.js").
    expect(pkg.dependencies.typescript).toBeDefined();
    expect(installed.dependencies.typescript).toBe(pkg.dependencies.typescript);
    const both = Object.keys(installed.dependencies).filter((p) => p in installed.devDependencies);
    expect(both).toEqual([]);
  });

  it("matches its lock file, so the runtime's npm install resolves what the tests ran", () => {
    const lock = json("package-lock.json") as { packages: Record<string, { version?: string; dependencies?: Record<string, string>; devDependencies?: Record<string, string> }> };
    expect(lock.packages[""]!.dependencies).toEqual(pkg.dependencies);
    expect(lock.packages[""]!.devDependencies).toEqual(pkg.devDependencies);
    for (const [name, version] of Object.entries(pkg.dependencies as Record<string, string>)) expect(lock.packages[`node_modules/${name}`]?.version, name).toBe(version);
  });

  it("models the runtime's update (the check can fail)", () => {
    const updated = runtimePackageJson({ dependencies: { "@dagger.io/dagger": "1", zod: "4" }, devDependencies: { typescript: "6" } });
    expect(updated.dependencies).toEqual({ typescript: "5.9.3", zod: "4" });
    expect(Object.keys(updated.dependencies).filter((p) => p in updated.devDependencies)).toEqual(["typescript"]);
  });
});
