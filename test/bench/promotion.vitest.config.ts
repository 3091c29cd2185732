import { defineConfig } from "vitest/config";

/** `npm run bench:promotion`: the promotion soak (a real registry on loopback, no engine); never part of `npm test`. */
export default defineConfig({
  test: {
    include: ["test/bench/promotion.bench.ts"],
    testTimeout: 60 * 60_000,
    hookTimeout: 60_000,
    disableConsoleIntercept: true,
  },
});
