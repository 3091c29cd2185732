/**
 * The layout's rules, checked over every file under src/ (recursively, as the
 * Dagger runtime loads them): each concern in its folder, the engine reached
 * only from files that say so in their name, and data flowing one way (no
 * import cycles).
 */
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { srcFiles } from "./support/dagger.js";

const SRC = join(import.meta.dirname, "..", "src");
const FOLDERS = ["core", "build", "cache", "registry", "release", "supply-chain"];
const files = srcFiles();
const name = (file: string) => relative(SRC, file);
const textOf = (file: string) => readFileSync(file, "utf8");

/** The src files a file imports by relative path (static, type-only and dynamic imports). */
function importsOf(file: string): string[] {
  const specs = [...textOf(file).matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)\.js["']/g)].map((m) => m[1]!);
  return specs.map((spec) => resolve(dirname(file), `${spec}.ts`));
}

const importsDagger = (file: string) => /(?:from|import)\s*\(?\s*["']@dagger\.io\/dagger(?:\/[^"']*)?["']/.test(textOf(file));

describe("src/ layout", () => {
  it("finds the files in the folders (the listing recurses)", () => {
    expect(files.length).toBeGreaterThan(20);
    expect(files.some((file) => name(file).startsWith("core/"))).toBe(true);
  });

  it("has src/index.ts as the one file outside the concern folders", () => {
    const outside = files.map(name).filter((file) => !FOLDERS.includes(file.split("/")[0]!) || file.split("/").length !== 2);
    expect(outside).toEqual(["index.ts"]);
  });

  it("imports @dagger.io/dagger only from index.ts and files named *.engine.ts, and every *.engine.ts does", () => {
    const offenders = files.map((file) => ({ file: name(file), dagger: importsDagger(file) })).filter(({ file, dagger }) => dagger !== (file === "index.ts" || file.endsWith(".engine.ts")));
    expect(offenders).toEqual([]);
  });

  it("has no import cycle", () => {
    const graph = new Map(files.map((file) => [file, importsOf(file)]));
    for (const targets of graph.values()) for (const target of targets) expect(graph.has(target), `${target} is imported but missing`).toBe(true);
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "open") {
        cycles.push([...path.slice(path.indexOf(file)), file].map(name).join(" -> "));
        return;
      }
      state.set(file, "open");
      for (const target of graph.get(file) ?? []) visit(target, [...path, file]);
      state.set(file, "done");
    };
    for (const file of files) visit(file, []);
    expect(cycles).toEqual([]);
  });

  it("keeps every file under 500 lines", () => {
    const long = files.map((file) => [name(file), textOf(file).split("\n").length] as const).filter(([, lines]) => lines > 500);
    expect(long).toEqual([]);
  });
});
