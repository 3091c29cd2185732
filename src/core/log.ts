/**
 * The module's logger: pino, JSON lines, with two layers of secret protection.
 *
 * 1. pino `redact` removes well-known secret fields (password, authorization
 *    headers, tokens) wherever code passes them as log properties.
 * 2. Every line is scrubbed for the literal values registered with
 *    `registerSecret` (the registry password, bearer tokens) and for
 *    credentials in URLs (`https://user:pass@host`) before it is written, so a
 *    secret that ended up inside a message or an error stack never reaches
 *    the output either.
 */
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { redactCredentials } from "./errors.js";

export type { Logger } from "pino";

export const REDACTED = "[REDACTED]";

/** Field paths pino blanks out; `*` matches one level of nesting. */
export const REDACT_PATHS = [
  "password",
  "*.password",
  "token",
  "*.token",
  "access_token",
  "*.access_token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "headers.Authorization",
  "*.headers.Authorization",
];

/** Literal secret values to scrub from every rendered line and report. */
export class SecretScrubber {
  private readonly values = new Set<string>();

  /** Remember a secret value (ignored when shorter than 4 characters). */
  add(value: string | undefined | null): void {
    if (!value || value.length < 4) return;
    this.values.add(value);
    // The same value as it appears inside a JSON string or URL.
    this.values.add(JSON.stringify(value).slice(1, -1));
    this.values.add(encodeURIComponent(value));
    this.values.add(Buffer.from(value).toString("base64"));
  }

  /** `text` with every registered secret, and any `user:pass@` in a URL, replaced by [REDACTED]. */
  scrub(text: string): string {
    let out = redactCredentials(text);
    for (const value of this.values) {
      if (value && out.includes(value)) out = out.split(value).join(REDACTED);
    }
    return out;
  }
}

/** The process-wide scrubber used by `createLogger` and the report renderer. */
export const secrets = new SecretScrubber();

/** Register a secret value so that no log line or report ever shows it. */
export function registerSecret(value: string | undefined | null): void {
  secrets.add(value);
}

export interface LoggerOptions {
  /** Where JSON lines go; default stderr (stdout stays free for results). */
  destination?: NodeJS.WritableStream;
  level?: string;
  name?: string;
  scrubber?: SecretScrubber;
}

/** A pino logger whose every line is redacted and scrubbed. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const target = options.destination ?? process.stderr;
  const scrubber = options.scrubber ?? secrets;
  const sink = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      target.write(scrubber.scrub(chunk.toString()));
      callback();
    },
  });
  return pino(
    {
      name: options.name ?? "slinky-containers",
      level: options.level ?? process.env.SLINKY_LOG_LEVEL ?? "info",
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      base: undefined,
    },
    sink,
  );
}

/** A logger that writes nothing (the default for library calls). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
