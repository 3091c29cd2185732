// Prints vitest's result as one plain closing line, "N passed, N failed, N skipped",
// and exits non-zero when vitest did or any test failed.
import { existsSync, readFileSync } from "node:fs";

const vitestExit = Number(process.argv[2] ?? 1);
const report = "out/vitest.json";
if (!existsSync(report)) {
  console.log("tests: 0 passed, 1 failed (vitest wrote no report)");
  process.exit(1);
}
const { numPassedTests, numFailedTests, numPendingTests, numTodoTests } = JSON.parse(readFileSync(report, "utf8"));
console.log(`tests: ${numPassedTests} passed, ${numFailedTests} failed, ${numPendingTests + numTodoTests} skipped`);
process.exit(vitestExit !== 0 || numFailedTests > 0 || numPassedTests === 0 ? 1 : 0);
