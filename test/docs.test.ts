/**
 * The README and docs/ against what they document: every link resolves (file
 * and anchor); every Dagger function, argument and GitLab variable is
 * documented, derived from the code so a new one cannot be forgotten; every
 * `dagger call` line names functions and flags the module really has (read by
 * the SDK's own scanner); and the doc comments `dagger call --help` shows are
 * short and name their valid values.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { FIELDS } from "../src/core/inputs.js";
import { loadManifest } from "../src/core/manifest.js";
import { cliName, type ScannedObject, scanModule } from "./support/dagger.js";
import { anchors, daggerCalls, firstCells, links, prose, section, shellWords } from "./support/markdown.js";

const ROOT = join(import.meta.dirname, "..");
const README = join(ROOT, "README.md");
const DOCS = join(ROOT, "docs");
const read = (file: string) => readFileSync(file, "utf8");
const docPages = () => readdirSync(DOCS).filter((f) => f.endsWith(".md")).sort().map((f) => join(DOCS, f));
const documents = () => [README, ...docPages()];

/** Functions of Dagger's core types the documentation chains after this module's. */
const CHAINED: Record<string, string[]> = { terminal: [], export: ["path"], "export-image": ["name"] };

describe("links in README.md and docs/", () => {
  it("every relative link names a file that exists, and an anchor that one of its headings makes", () => {
    const broken: string[] = [];
    for (const file of documents()) {
      for (const target of links(read(file))) {
        if (/^[a-z]+:/i.test(target)) continue;
        const [path, anchor] = target.split("#") as [string, string | undefined];
        const to = path === "" ? file : resolve(dirname(file), path);
        const where = `${relative(ROOT, file)}: ${target}`;
        if (!existsSync(to)) broken.push(`${where} (no such file)`);
        else if (anchor !== undefined && to.endsWith(".md") && !anchors(read(to)).has(anchor)) broken.push(`${where} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("the README links to every docs/ page, each of which says first what it answers", () => {
    const linked = new Set(links(read(README)).map((l) => resolve(ROOT, l.split("#")[0]!)));
    expect(docPages().length).toBeGreaterThan(5);
    for (const page of docPages()) {
      expect(linked.has(page), `README.md does not link to ${relative(ROOT, page)}`).toBe(true);
      const opening = read(page).split("\n").slice(1, 6).join(" ");
      expect(opening, `${relative(ROOT, page)} does not open with what it answers`).toMatch(/This page answers:/);
    }
  });

  it("the README is the short manual: at most 400 lines and 40 KB", () => {
    const text = read(README);
    expect(text.split("\n").length).toBeLessThanOrEqual(400);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(40 * 1024);
  });

  it("the user's pages carry no session dates or commit ids: those belong to docs/benchmarks.md", () => {
    const found: string[] = [];
    for (const file of documents().filter((f) => !f.endsWith("benchmarks.md"))) {
      const text = prose(read(file));
      for (const m of text.matchAll(/\b(20\d\d-\d\d-\d\d|(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,12})\b/g)) found.push(`${relative(ROOT, file)}: ${m[1]}`);
    }
    expect(found).toEqual([]);
  });

  it("finds a broken link and a missing anchor (the check can fail)", () => {
    expect(links("see [x](docs/none.md) and `[y](z)`")).toEqual(["docs/none.md"]);
    expect(anchors("# A `b`: c\n## A `b`: c\n```\n# not a heading\n```\n").has("a-b-c-1")).toBe(true);
    expect(anchors("# x\n```sh\n# y\n```").has("y")).toBe(false);
  });
});

describe("the Dagger surface is documented", () => {
  let module: ScannedObject;
  beforeAll(async () => {
    module = (await scanModule()).objects.SlinkyContainers!;
  }, 120_000);

  const functions = () => Object.values(module.methods);

  it("the README's Use section calls every function", () => {
    const called = new Set(daggerCalls(section(read(README), "Use")).map(calledFunction));
    const missing = functions().map((f) => cliName(f.name)).filter((name) => !called.has(name));
    expect(functions().length).toBeGreaterThan(5);
    expect(missing).toEqual([]);
  });

  it("the README's Inputs table has every argument of every function and of the module", () => {
    const cells = firstCells(section(read(README), "Inputs")).join(" ");
    const flags = new Set([...cells.matchAll(/`--([a-z-]+)`/g)].map((m) => m[1]!));
    const args = [...Object.values(module.constructor.arguments), ...functions().flatMap((f) => Object.values(f.arguments))];
    const missing = [...new Set(args.map((a) => cliName(a.name)))].filter((flag) => !flags.has(flag));
    expect(missing).toEqual([]);
    const unknown = [...flags].filter((flag) => !args.some((a) => cliName(a.name) === flag));
    expect(unknown, "flags in the Inputs table that no function takes").toEqual([]);
  });

  it("every `dagger call` line in README.md and docs/ names a real function and only flags it takes", () => {
    const wrong: string[] = [];
    const byName = new Map(functions().map((f) => [cliName(f.name), new Set(Object.values(f.arguments).map((a) => cliName(a.name)))]));
    const moduleFlags = new Set(Object.values(module.constructor.arguments).map((a) => cliName(a.name)));
    let count = 0;
    for (const file of documents()) {
      for (const call of daggerCalls(read(file))) {
        count++;
        const where = `${relative(ROOT, file)}: ${call}`;
        const words = shellWords(call).slice(2);
        let fn: string | undefined;
        let takes = moduleFlags;
        for (let i = 0; i < words.length; i++) {
          const word = words[i]!;
          if (word.startsWith("--")) {
            const flag = word.slice(2).split("=")[0]!;
            if (!takes.has(flag)) wrong.push(`${where}: --${flag} is not an argument of ${fn ?? "the module"}`);
            if (!word.includes("=")) i++;
          } else if (word === "..." || word === "…") {
            continue; // an elided part of the example
          } else if (fn === undefined) {
            fn = word;
            const own = byName.get(word);
            if (!own) wrong.push(`${where}: no function ${word}`);
            takes = own ?? new Set();
          } else if (word in CHAINED) {
            fn = word;
            takes = new Set(CHAINED[word]);
          } else wrong.push(`${where}: ${word} is not chained here`);
        }
        if (fn === undefined) wrong.push(`${where}: no function`);
      }
    }
    expect(count).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
  });

  it("each function's and argument's doc comment is one or two sentences", () => {
    const long: string[] = [];
    for (const fn of functions()) {
      if (sentences(fn.description) > 2) long.push(`${fn.name}: ${fn.description}`);
      for (const arg of Object.values(fn.arguments)) if (sentences(arg.description) > 2) long.push(`${fn.name} ${arg.name}: ${arg.description}`);
    }
    expect(long).toEqual([]);
  });

  it("each function's first line, all that `dagger functions` shows of it, is a whole sentence", () => {
    const cut = functions().map((f) => f.description.split("\n")[0]!.trim()).filter((line) => !line.endsWith(".") || line.length > 80);
    expect(cut).toEqual([]);
  });

  it("an argument with a fixed set of values names every one of them", () => {
    const manifest = loadManifest();
    const fixed: Record<string, readonly string[]> = {
      slurmVersion: Object.keys(manifest.slurm),
      flavor: Object.keys(manifest.flavors),
    };
    for (const [field, rule] of Object.entries(FIELDS)) {
      const tokens = (rule.valid as readonly string[]).filter((v) => !/\s/.test(v));
      if (tokens.length > 0) fixed[field] = tokens;
    }
    const unnamed: string[] = [];
    for (const fn of functions()) {
      for (const arg of Object.values(fn.arguments)) {
        for (const value of fixed[arg.name] ?? []) if (!names(arg.description, value)) unnamed.push(`${fn.name} --${cliName(arg.name)}: ${value}`);
      }
    }
    expect(Object.keys(fixed)).toEqual(expect.arrayContaining(["group", "image", "flavor", "slurmVersion", "signing", "buildCache"]));
    expect(unnamed).toEqual([]);
  });

  it("counts sentences as a reader does (the check can fail)", () => {
    expect(sentences("Build one image, e.g. slurmd. Chain `terminal` to look inside.")).toBe(2);
    expect(sentences("One. Two. Three.")).toBe(3);
    expect(sentences("$CI_PIPELINE_SOURCE (push, web, ...).")).toBe(1);
    expect(names("Images: core, extras or all.", "all")).toBe(true);
    expect(names("Images to build: core or extras.", "on")).toBe(false);
  });
});

describe("paths named in the docs and in comments", () => {
  /** The files whose text names repository paths: the docs, and every source, script and recipe file. */
  const sources = () =>
    ["src", "test", "dockerfiles", "ci", "examples"].flatMap((dir) =>
      (readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" }) as string[])
        .filter((f) => /\.(ts|sh|ya?ml|conf)$|Dockerfile/.test(f) && !f.includes("node_modules"))
        .map((f) => join(ROOT, dir, f)),
    );
  const REPO_PATH = /\b((?:src|test|dockerfiles|ci|examples)\/[\w.+\/-]*\.(?:ts|sh|md|json|ya?ml|conf|cfg|site|c|mjs))\b/g;
  const comment = (line: string) => /^\s*(#|\/\/|\*|\/\*\*)/.test(line);

  it("every path of this repository that a doc or a comment names exists", () => {
    const missing: string[] = [];
    const texts = [
      ...documents().map((file) => [file, read(file)] as const),
      ...sources().map((file) => [file, read(file).split("\n").filter(comment).join("\n")] as const),
    ];
    for (const [file, text] of texts) {
      for (const m of text.matchAll(REPO_PATH)) if (!existsSync(join(ROOT, m[1]!))) missing.push(`${relative(ROOT, file)}: ${m[1]}`);
    }
    expect(texts.length).toBeGreaterThan(50);
    expect(missing).toEqual([]);
  });
});

describe("GitLab CI/CD variables are documented", () => {
  const gitlab = parse(read(join(ROOT, ".gitlab-ci.yml"))) as { variables: Record<string, unknown> };
  const job = read(join(ROOT, "ci", "dagger-ci.sh"));
  const install = read(join(ROOT, "ci", "install-dagger.sh"));

  it("the README's GitLab table has every variable of .gitlab-ci.yml and every one the job's script reads", () => {
    const table = new Set(firstCells(section(read(README), "GitLab CI/CD")).flatMap((c) => [...c.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1]!)));
    const read_ = [...job.matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!).filter((v) => !v.startsWith("CI_") && v !== "BASH_SOURCE");
    const variables = [...new Set([...Object.keys(gitlab.variables), ...read_])];
    expect(variables).toEqual(expect.arrayContaining(["SLURM_VERSION", "SIGNING", "COSIGN_PRIVATE_KEY"]));
    expect(variables.filter((v) => !table.has(v))).toEqual([]);
  });

  it("docs/gitlab-ci.md names every input of ci/install-dagger.sh", () => {
    const header = install.split("\n").filter((l) => l.startsWith("#"));
    const inputs = header.map((l) => /^#\s+([A-Z][A-Z0-9_]+)\s/.exec(l)?.[1]).filter((v): v is string => !!v);
    expect(inputs).toEqual(expect.arrayContaining(["DAGGER_VERSION", "DAGGER_SHA256"]));
    const page = read(join(DOCS, "gitlab-ci.md"));
    expect(inputs.filter((v) => !page.includes(`\`${v}\``))).toEqual([]);
  });
});

/** The module function a `dagger call` line calls: its first word that is neither a flag nor a flag's value. */
function calledFunction(call: string): string | undefined {
  const words = shellWords(call);
  return words.find((w, i) => i > 1 && !w.startsWith("-") && !words[i - 1]!.startsWith("--"));
}

/** Sentences in a doc comment: e.g., i.e. and ellipses end none. */
function sentences(text: string): number {
  const plain = text.replace(/\b(e\.g|i\.e|etc)\./g, "$1").replace(/\.\.\.|…/g, "").trim();
  return plain.split(/(?<=[.!?])\s+(?=[A-Z`$(])/).filter((s) => s.trim() !== "").length;
}

/** Whether a text names a value as a word of its own (not inside a longer word). */
function names(text: string, value: string): boolean {
  const escaped = value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^\\w./-])${escaped}($|[^\\w/-])`).test(text);
}
