/**
 * linux/arm64 on this amd64 machine, under emulation (test/emulation.sh): the
 * debootstrapped arm64 trixie base (test/images/base.sh ... arm64, made once and
 * kept on the harness engine like the amd64 base) is a linux/arm64 image, runs as
 * aarch64, and BuildKit builds on it for --platform linux/arm64.
 *
 * Without emulation (binfmt_misc cannot be mounted here), these tests are skipped
 * under a name that says why.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE_IMAGE_ARM64, docker, dockerOk, type Engine, ensureBase, HERE, run, startEngine, stopEngine } from "./harness.js";

const status = await run(join(HERE, "..", "emulation.sh"), ["status"], { timeoutMs: 30_000 });
const why = status.stdout.trim() || status.stderr.trim();
const ready = status.code === 0;
const PROBE = "slinky-test/arm64-probe:latest";

describe.skipIf(!ready)(ready ? "linux/arm64 under emulation" : `linux/arm64 under emulation (SKIPPED: ${why})`, () => {
  let engine: Engine | undefined;
  let baseId = "";
  let bootstrapSeconds = 0;

  beforeAll(async () => {
    engine = await startEngine();
    const started = Date.now();
    baseId = await ensureBase(BASE_IMAGE_ARM64, "arm64");
    bootstrapSeconds = (Date.now() - started) / 1000;
  });
  afterAll(async () => {
    await docker(["image", "rm", "--force", PROBE]);
    if (engine) await stopEngine(engine);
    console.log(`arm64 base ${BASE_IMAGE_ARM64} ${baseId.slice(0, 19)}: ready in ${bootstrapSeconds.toFixed(0)} s (0 when already made)`);
  });

  it("the arm64 base is a linux/arm64 image and runs as aarch64", async () => {
    const platform = await dockerOk(["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", BASE_IMAGE_ARM64]);
    expect(platform.trim()).toBe("linux/arm64");
    const out = await dockerOk(
      ["run", "--rm", "--network", "none", "--platform", "linux/arm64", BASE_IMAGE_ARM64, "sh", "-c", "uname -m; dpkg --print-architecture; apt-config dump APT::Architecture"],
      { timeoutMs: 120_000 },
    );
    expect(out.trim().split("\n")).toEqual(["aarch64", "arm64", 'APT::Architecture "arm64";']);
  });

  it("BuildKit builds FROM it for --platform linux/arm64, running its RUN steps as aarch64", async () => {
    const dockerfile = `FROM ${BASE_IMAGE_ARM64}\nRUN uname -m > /arch && dpkg --print-architecture >> /arch && file=$(readlink -f /bin/sh) && head -c 20 "$file" | od -An -tx1 | tr -d ' \\n' >> /arch\n`;
    const build = await docker(["build", "--network", "host", "--platform", "linux/arm64", "--pull=false", "-t", PROBE, "-"], {
      input: dockerfile,
      timeoutMs: 600_000,
    });
    expect(build.code, build.stderr.slice(-3000)).toBe(0);
    expect((await dockerOk(["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", PROBE])).trim()).toBe("linux/arm64");
    const arch = (await dockerOk(["run", "--rm", "--network", "none", "--platform", "linux/arm64", PROBE, "cat", "/arch"])).trim().split("\n");
    expect(arch.slice(0, 2)).toEqual(["aarch64", "arm64"]);
    // /bin/sh is an ELF for machine 0xb7 (EM_AARCH64): bytes 18-19 of its header.
    expect(arch[2]?.slice(36, 40)).toBe("b700");
  });
});
