/**
 * The harness's own pieces, against the real things: the Slurm source stand-in
 * from the apt mirror (checked by size and sha256) and the loopback file server.
 */
import { statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { aptMirror, SLURM_STANDIN, serveFiles, sha256File, slurmSource } from "./harness.js";

describe("image harness pieces", () => {
  it("reads the Debian mirror from apt's configuration", async () => {
    expect(await aptMirror()).toMatch(/^(https?|file):\/\/\S+[^/]$/);
  });

  it("caches the Slurm source stand-in with its pinned size and sha256", async () => {
    const path = await slurmSource();
    expect(statSync(path).size).toBe(SLURM_STANDIN.bytes);
    expect(await sha256File(path)).toBe(SLURM_STANDIN.sha256);
  }, 600_000);

  it("serves exactly the listed files on 127.0.0.1 and nothing else", async () => {
    const path = await slurmSource();
    const server = await serveFiles({ [SLURM_STANDIN.file]: path });
    try {
      expect(server.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const ok = await fetch(server.url(SLURM_STANDIN.file));
      expect(ok.status).toBe(200);
      const body = Buffer.from(await ok.arrayBuffer());
      expect(body.length).toBe(SLURM_STANDIN.bytes);
      expect((await fetch(`${server.origin}/../../etc/passwd`)).status).toBe(404);
      expect((await fetch(`${server.origin}/${SLURM_STANDIN.file}.sha256`)).status).toBe(404);
      expect((await fetch(`${server.origin}/%E0%A4%A`)).status).toBe(404);
      expect((await fetch(`${server.origin}/./${SLURM_STANDIN.file}`, { method: "HEAD" })).status).toBe(200);
      expect((await fetch(server.url(SLURM_STANDIN.file), { method: "POST" })).status).toBe(404);
    } finally {
      await server.close();
    }
  }, 120_000);

  it("falls back to an ephemeral port when the preferred one is taken", async () => {
    const first = await serveFiles({});
    const taken = Number(new URL(first.origin).port);
    const second = await serveFiles({}, taken);
    try {
      expect(Number(new URL(second.origin).port)).not.toBe(taken);
      expect((await fetch(`${second.origin}/x`)).status).toBe(404);
    } finally {
      await second.close();
      await first.close();
    }
  });
});
