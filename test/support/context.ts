/** A build context on the file system, as src/cache/keys.ts reads one (the Dagger side reads a Directory). */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { ContextReader } from "../../src/cache/keys.js";

export function fsContext(root: string): ContextReader {
  const walk = (path: string): string[] =>
    statSync(path).isDirectory()
      ? readdirSync(path)
          .sort()
          .flatMap((name) => walk(join(path, name)))
      : [path];
  return {
    async files(source) {
      let path: string;
      try {
        path = join(root, source);
        statSync(path);
      } catch {
        return [];
      }
      return walk(path).map((file) => relative(root, file));
    },
    async read(path) {
      return readFileSync(join(root, path));
    },
  };
}
