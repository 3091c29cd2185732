import { defineConfig } from "vitest/config";

/**
 * `npm run test:arm64`: all 8 images for linux/arm64 on this amd64 machine (package
 * set cross-compiled, runtime stages under qemu emulation), their smoke checks, and
 * a two-platform index through publish and promote. Long (most of an hour on 2
 * cores); never part of `npm test`. Runs on the image harness's shared engine,
 * under its lock.
 */
export default defineConfig({
  test: {
    include: ["test/arm64/images.arm64.ts"],
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 90 * 60_000,
    hookTimeout: 60 * 60_000,
    sequence: { concurrent: false },
  },
});
