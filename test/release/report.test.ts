/** The run report: Markdown and JSON renderings, and that secrets never show. */
import { describe, expect, it } from "vitest";
import { SecretScrubber } from "../../src/core/log.js";
import { formatBytes, imageRow, type Report, renderJson, renderMarkdown } from "../../src/release/report.js";

const D1 = `sha256:${"1".repeat(64)}`;
const D0 = `sha256:${"0".repeat(64)}`;
const R = "registry.example.com/g/p";

function sample(): Report {
  const slurmd = {
    ...imageRow("slurmd"),
    built: true,
    buildMs: 61_000,
    pushed: true,
    digest: D1,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    sizeBytes: 300 * 1024 * 1024,
    publishMs: 4200,
    promoted: false,
    references: [`${R}/slurmd:25.11-ubuntu24.04-main-a1b2c3d4`, `${R}/slurmd:25.11-ubuntu24.04-main-latest`],
  };
  const login = { ...imageRow("login"), built: true, buildMs: 1000, error: "push blob x: authentication failed (401) for user \"u\"" };
  return {
    schemaVersion: 1,
    ok: false,
    mode: "publish-and-promote",
    summary: "1 of 2 images failed to publish (login); no production tag moved",
    context: { branch: "main", commitSha: "a1b2c3d4e5f6", defaultBranch: "main", pipelineSource: "push", registry: R, slurmVersion: "25.11", flavor: "ubuntu24.04", group: "core" },
    tags: { commit: "25.11-ubuntu24.04-main-a1b2c3d4", branchLatest: "25.11-ubuntu24.04-main-latest", production: "25.11-ubuntu24.04-latest" },
    images: [slurmd, login],
    promotion: {
      attempted: true,
      promoted: false,
      outcome: "rolled-back",
      reason: "moving the production tag failed for login; 1 tags rolled back",
      moved: [],
      unchanged: [],
      rolledBack: [{ image: "slurmd", ref: `${R}/slurmd:25.11-ubuntu24.04-latest`, from: D1, to: D0 }],
      notRestored: [],
      failed: [{ image: "login", error: "answered 500" }],
      conflicts: [],
      tags: [
        { image: "slurmd", ref: `${R}/slurmd:25.11-ubuntu24.04-latest`, old: D0, new: D1, now: D0, state: "old" },
        { image: "login", ref: `${R}/login:25.11-ubuntu24.04-latest`, old: D0, new: D1, now: D0, state: "old" },
      ],
    },
    errors: [],
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:01:05.000Z",
    durationMs: 65_000,
  };
}

describe("report rendering", () => {
  it("JSON keeps every reference, digest, size, duration and promotion state", () => {
    const doc = JSON.parse(renderJson(sample()));
    expect(doc.ok).toBe(false);
    expect(doc.images[0]).toMatchObject({ image: "slurmd", digest: D1, sizeBytes: 314572800, buildMs: 61000, publishMs: 4200, promoted: false });
    expect(doc.images[0].references).toHaveLength(2);
    expect(doc.promotion.rolledBack[0]).toMatchObject({ from: D1, to: D0 });
  });

  it("Markdown says what failed and what moved", () => {
    const md = renderMarkdown(sample());
    expect(md).toMatch(/^# slinky-containers run: FAILED/);
    expect(md).toContain("| slurmd | yes | yes | `sha256:111111111111` | 300.0 MiB | 61.0 s | 4.2 s | no |");
    expect(md).toContain(`- \`${R}/slurmd:25.11-ubuntu24.04-main-latest\` -> \`${D1}\``);
    expect(md).toMatch(/## Promotion\n\nNot promoted \(rolled-back\): moving the production tag failed for login/);
    expect(md).toContain(`Rolled back:\n- \`${R}/slurmd:25.11-ubuntu24.04-latest\`: ${D1} -> ${D0}`);
    expect(md).toMatch(/## Failures\n\n- login: push blob x: authentication failed/);
  });

  it("lists each platform's digest under the index digest, and no platform section for single-platform images", () => {
    expect(renderMarkdown(sample())).not.toContain("## Platforms");
    const report = sample();
    const D2 = `sha256:${"2".repeat(64)}`;
    const D3 = `sha256:${"3".repeat(64)}`;
    report.images[0] = {
      ...report.images[0]!,
      mediaType: "application/vnd.oci.image.index.v1+json",
      platforms: [
        { platform: "linux/amd64", digest: D2 },
        { platform: "linux/arm64", digest: D3 },
      ],
    };
    const md = renderMarkdown(report);
    expect(md).toContain(
      `## Platforms\n\n| image | index digest | platform | platform digest |\n|---|---|---|---|\n` +
        `| slurmd | \`${D1}\` | linux/amd64 | \`${D2}\` |\n| slurmd | \`${D1}\` | linux/arm64 | \`${D3}\` |`,
    );
    expect(JSON.parse(renderJson(report)).images[0].platforms).toEqual([
      { platform: "linux/amd64", digest: D2 },
      { platform: "linux/arm64", digest: D3 },
    ]);
  });

  it("scrubs registered secrets, also JSON-escaped and base64-encoded", () => {
    const scrubber = new SecretScrubber();
    const secret = 'pa"ss\\word-42';
    scrubber.add(secret);
    const report = sample();
    report.errors.push(`leaked ${secret} and ${Buffer.from(secret).toString("base64")}`);
    const json = renderJson(report, scrubber);
    const md = renderMarkdown(report, scrubber);
    for (const text of [json, md]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(JSON.stringify(secret).slice(1, -1));
      expect(text).not.toContain(Buffer.from(secret).toString("base64"));
      expect(text).toContain("[REDACTED]");
    }
  });

  it("formats sizes", () => {
    expect(formatBytes(null)).toBe("-");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(1.24 * 1024 ** 3)).toBe("1.2 GiB");
  });
});
