import { defineConfig } from "vitest/config";

/** `npm run bench:signing`: signing the harness's real images (needs them built: npm run test:images); never part of `npm test`. */
export default defineConfig({
  test: {
    include: ["test/bench/signing.bench.ts"],
    pool: "forks",
    maxWorkers: 1,
    testTimeout: 30 * 60_000,
    hookTimeout: 5 * 60_000,
  },
});
