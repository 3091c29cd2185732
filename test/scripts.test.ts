/**
 * The shell scripts of the test setup, the image harness, the benchmarks, the
 * engine tests and the compose example (test/*.sh, test/images/*.sh and its
 * test images' folders, test/bench/*.sh, test/engine/*.sh, examples/compose/*.sh)
 * pass shellcheck; ci/*.sh are
 * checked in test/ci/. arm64 emulation itself is exercised where it is used:
 * test/images/arm64.test.ts runs the arm64 base image under it.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = join(fileURLToPath(import.meta.url), "..", "..");
const scripts = ["test", "test/images", "test/images/compose-mariadb", "test/bench", "test/engine", "examples/compose"].flatMap((dir) =>
  existsSync(join(ROOT, dir))
    ? readdirSync(join(ROOT, dir))
        .filter((f) => f.endsWith(".sh"))
        .map((f) => join(dir, f))
    : [],
);

describe("shell scripts", () => {
  it("test/*.sh, test/images/*.sh, test/bench/*.sh, test/engine/*.sh and examples/compose/*.sh pass shellcheck", async () => {
    expect(scripts).toEqual(
      expect.arrayContaining(["test/setup.sh", "test/emulation.sh", "test/images/base.sh", "test/bench/arm64-cross.sh", "test/engine/engine.sh", "test/engine/build-dagger.sh", "test/images/compose-engine.sh", "test/images/compose-mariadb/entrypoint.sh", "examples/compose/init.sh"]),
    );
    const result = await promisify(execFile)("shellcheck", ["--severity=style", ...scripts], { cwd: ROOT }).catch(
      (error: { stdout?: string; stderr?: string }) => error,
    );
    expect("code" in result ? `${result.stdout}${result.stderr}` : "").toBe("");
  });
});
