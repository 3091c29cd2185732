/**
 * The harness's own pieces, against the real things: the Slurm source stand-in
 * from the apt mirror (checked by size and sha256) and the loopback file server.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { aptMirror, SLURM_24_11_STANDIN, SLURM_SOURCE, serveFiles, sha256File, slurmSource, slurmSourceFrom } from "./harness.js";

describe("image harness pieces", () => {
  it("reads the Debian mirror from apt's configuration", async () => {
    expect(await aptMirror()).toMatch(/^(https?|file):\/\/\S+[^/]$/);
  });

  it("caches the Slurm source stand-in with its pinned size and sha256", async () => {
    const path = await slurmSource(SLURM_24_11_STANDIN);
    expect(statSync(path).size).toBe(9_907_599);
    expect(await sha256File(path)).toBe("e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332");
  }, 600_000);

  it("builds the 24.11.5 stand-in unless SLINKY_SLURM_TARBALL names a real release", () => {
    expect(slurmSourceFrom({})).toBe(SLURM_24_11_STANDIN);
    console.log(`[harness] Slurm source of this run: ${SLURM_SOURCE.version}${SLURM_SOURCE.standIn ? " (STAND-IN)" : ` from ${SLURM_SOURCE.localPath}`}`);
  });

  it("takes a release tarball from SLINKY_SLURM_TARBALL + SLINKY_SLURM_VERSION, sized and hashed from the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "slinky-source-"));
    try {
      const tarball = join(dir, "slurm-25.11.8.tar.bz2");
      writeFileSync(tarball, "not really slurm, only bytes to hash\n");
      const source = slurmSourceFrom({ SLINKY_SLURM_TARBALL: tarball, SLINKY_SLURM_VERSION: "25.11.8" });
      expect(source).toMatchObject({ line: "25.11", version: "25.11.8", file: "slurm-25.11.8.tar.bz2", bytes: 37, standIn: false });
      expect(source.sha256).toBe(await sha256File(tarball));
      expect(await slurmSource(source)).toBe(tarball);
      writeFileSync(tarball, "changed under the run\n");
      await expect(slurmSource(source)).rejects.toThrow(/changed since the run started/);
      expect(() => slurmSourceFrom({ SLINKY_SLURM_TARBALL: tarball })).toThrow(/needs SLINKY_SLURM_VERSION.*X\.Y\.Z/);
      expect(() => slurmSourceFrom({ SLINKY_SLURM_TARBALL: tarball, SLINKY_SLURM_VERSION: "25.11" })).toThrow(/X\.Y\.Z/);
      expect(() => slurmSourceFrom({ SLINKY_SLURM_TARBALL: join(dir, "absent.tar.bz2"), SLINKY_SLURM_VERSION: "25.11.8" })).toThrow(/no such file/);
      expect(() => slurmSourceFrom({ SLINKY_SLURM_VERSION: "25.11.8" })).toThrow(/needs SLINKY_SLURM_TARBALL/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("serves exactly the listed files on 127.0.0.1 and nothing else", async () => {
    const path = await slurmSource();
    const server = await serveFiles({ [SLURM_SOURCE.file]: path });
    try {
      expect(server.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const ok = await fetch(server.url(SLURM_SOURCE.file));
      expect(ok.status).toBe(200);
      const body = Buffer.from(await ok.arrayBuffer());
      expect(body.length).toBe(SLURM_SOURCE.bytes);
      expect((await fetch(`${server.origin}/../../etc/passwd`)).status).toBe(404);
      expect((await fetch(`${server.origin}/${SLURM_SOURCE.file}.sha256`)).status).toBe(404);
      expect((await fetch(`${server.origin}/%E0%A4%A`)).status).toBe(404);
      expect((await fetch(`${server.origin}/./${SLURM_SOURCE.file}`, { method: "HEAD" })).status).toBe(200);
      expect((await fetch(server.url(SLURM_SOURCE.file), { method: "POST" })).status).toBe(404);
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
