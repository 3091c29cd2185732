import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/images/**", "test/engine/**", "node_modules/**"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: "images",
          // The engine tests share the image harness's engine, base and ports: one file at a time.
          include: ["test/images/**/*.test.ts", "test/engine/**/*.test.ts"],
          globalSetup: ["test/engine/global-setup.ts"],
          pool: "forks",
          maxWorkers: 1,
          fileParallelism: false,
          testTimeout: 45 * 60_000,
          hookTimeout: 45 * 60_000,
        },
      },
    ],
  },
});
