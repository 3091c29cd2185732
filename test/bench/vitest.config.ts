import { defineConfig } from "vitest/config";

/** `npm run bench:cache`: the build-cache benchmark, on its own engine; never part of `npm test`. */
export default defineConfig({
  test: {
    include: ["test/bench/cache.bench.ts"],
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 60 * 60_000,
    hookTimeout: 30 * 60_000,
    sequence: { concurrent: false },
    env: {
      SLINKY_ENGINE_DIR: process.env.SLINKY_ENGINE_DIR ?? "/var/tmp/slinky-bench/engine",
      TMPDIR: process.env.TMPDIR ?? "/var/tmp/slinky-bench/tmp",
    },
  },
});
