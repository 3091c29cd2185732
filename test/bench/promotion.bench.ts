/**
 * The promotion soak as a benchmark: `npm run bench:promotion` (environment:
 * SOAK_PROMOTIONS, default 300; SOAK_SEED, default 20261129; SOAK_RATES, fault
 * rates separated by commas, default 0.05,0.1,0.2,0.3,0.45,0.6). Prints the
 * counts (success, clean failure, MIXED, mismatches, every NOT restored case)
 * and writes them to out/promotion-soak.json. It fails if any MIXED outcome
 * went unreported, any report disagreed with the registry, or two concurrent
 * promotions both reported success.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { expect, it } from "vitest";
import { formatSoak, runSoak } from "../registry/soak.js";

it("promotion soak", async () => {
  const promotions = Number(process.env.SOAK_PROMOTIONS ?? 300);
  const seed = Number(process.env.SOAK_SEED ?? 20261129);
  const rates = process.env.SOAK_RATES?.split(",").map(Number);
  if (rates?.some((r) => !(r >= 0 && r < 1))) throw new Error(`SOAK_RATES: rates from 0 to below 1, e.g. 0.3,0.6; got ${process.env.SOAK_RATES}`);
  const counts = await runSoak({
    promotions,
    seed,
    ...(rates ? { rates } : {}),
    progress: process.env.SOAK_PROGRESS ? (line) => process.stderr.write(`${line}\n`) : undefined,
  });
  const text = formatSoak(counts);
  process.stdout.write(`\n${text}\n\n`);
  mkdirSync("out", { recursive: true });
  writeFileSync("out/promotion-soak.json", `${JSON.stringify(counts, null, 2)}\n`);
  expect(counts.mixedUnreported).toBe(0);
  expect(counts.mismatches).toBe(0);
  expect(counts.bothSucceeded).toBe(0);
});
