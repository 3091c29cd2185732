/** The logger never writes a secret: redacted fields and scrubbed values. */
import { describe, expect, it } from "vitest";
import { createLogger, REDACTED, SecretScrubber } from "../../src/core/log.js";

function capture() {
  const lines: string[] = [];
  const stream = { write: (chunk: string) => (lines.push(chunk.toString()), true) } as unknown as NodeJS.WritableStream;
  return { lines, stream };
}

describe("logger", () => {
  it("redacts password and authorization fields", () => {
    const { lines, stream } = capture();
    const log = createLogger({ destination: stream, scrubber: new SecretScrubber() });
    log.info({ password: "hunter2-x", req: { headers: { authorization: "Basic abc" } }, token: "t0k3n" }, "hello");
    const line = JSON.parse(lines[0] as string);
    expect(line.password).toBe(REDACTED);
    expect(line.token).toBe(REDACTED);
    expect(line.req.headers.authorization).toBe(REDACTED);
    expect(line.msg).toBe("hello");
  });

  it("scrubs a registered secret from messages and error stacks", () => {
    const { lines, stream } = capture();
    const scrubber = new SecretScrubber();
    scrubber.add("s3cr3t-value");
    const log = createLogger({ destination: stream, scrubber, level: "debug" });
    log.debug(`connecting with s3cr3t-value`);
    log.error({ err: new Error("bad s3cr3t-value") }, "failed");
    const text = lines.join("");
    expect(text).not.toContain("s3cr3t-value");
    expect(text.match(/\[REDACTED\]/g)?.length).toBeGreaterThanOrEqual(3);
  });

  it("scrubs credentials pasted into a URL, registered or not", () => {
    const { lines, stream } = capture();
    const log = createLogger({ destination: stream, scrubber: new SecretScrubber() });
    log.warn({ url: "https://bob:never-registered@mirror.example/slurm.tar.bz2" }, "fetching http://amy:pw2@mirror.example/x");
    const text = lines.join("");
    expect(text).not.toContain("never-registered");
    expect(text).not.toContain("pw2");
    expect(text).toContain("https://[REDACTED]@mirror.example/slurm.tar.bz2");
  });
});
