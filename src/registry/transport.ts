/**
 * How the registry client talks HTTP: one request (`Transport.fetch`: the
 * concurrency limit, the timeout, a network failure as a RegistryError), how a
 * response is judged (success, passed through, or which RegistryError), and
 * the one retry policy every registry call runs under (`withRetries`: bounded,
 * exponential, jittered, a Retry-After honoured, only transient errors unless
 * told). The password never reaches a message or a log line here: requests
 * carry it in a header made by auth.ts.
 */
import pLimit, { type LimitFunction } from "p-limit";
import pRetry from "p-retry";
import type { Logger } from "../core/log.js";
import { NotRetried, RegistryAuthError, RegistryError, RegistryNotFoundError, registryErrorText } from "./errors.js";
import { DOCKER_HUB, DOCKER_HUB_API, formatRef, type ImageRef } from "./reference.js";

export interface RawResponse {
  status: number;
  headers: Headers;
  body: Buffer;
  url: string;
}

/** One registry operation, as the client asks for it. */
export interface Op {
  /** What the user asked for, in error messages ("get manifest", "push blob", ...). */
  operation: string;
  ref: ImageRef;
  method: string;
  /** Absolute URL, or a path under /v2/<repository>/. */
  url?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Statuses that mean success. */
  ok: number[];
  /** Statuses returned to the caller instead of thrown. */
  pass?: number[];
  /** A second repository's scope the token must also grant (cross-repository blob mount). */
  extraScope?: string;
}

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current && typeof current === "object"; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const name = (current as { name?: unknown }).name;
    if (name === "TimeoutError" || name === "AbortError") return "ETIMEDOUT";
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export function retryAfterField(headers: Headers): { retryAfterMs?: number } {
  const ms = parseRetryAfter(headers.get("retry-after"));
  return ms === undefined ? {} : { retryAfterMs: ms };
}

/** Upload URLs carry opaque state; keep logs to scheme, host and path. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return "(url)";
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How transient failures are retried. */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** First backoff delay, doubling up to maxBackoffMs. */
  minBackoffMs: number;
  maxBackoffMs: number;
  /** Longest Retry-After honoured. */
  maxRetryAfterMs: number;
}

/** The policy from the client's options: 4 retries, 500 ms doubling to 8 s, Retry-After up to 60 s. */
export function retryPolicyOf(options: Partial<RetryPolicy>): RetryPolicy {
  return {
    retries: options.retries ?? 4,
    minBackoffMs: options.minBackoffMs ?? 500,
    maxBackoffMs: options.maxBackoffMs ?? 8000,
    maxRetryAfterMs: options.maxRetryAfterMs ?? 60_000,
  };
}

/**
 * `fn` under `policy` (bounded, exponential, jittered; a Retry-After is
 * honoured). By default only transient registry errors are retried,
 * `policy.retries` times; `retryAny` retries every error but a `NotRetried`
 * one (for reads whose failure would leave an outcome unknown).
 */
export function withRetries<T>(
  policy: RetryPolicy,
  log: Logger,
  operation: string,
  ref: ImageRef,
  fn: () => Promise<T>,
  options: { retries?: number; retryAny?: boolean } = {},
): Promise<T> {
  const transient = (error: unknown): error is RegistryError => error instanceof RegistryError && error.transient;
  const retryable = (error: unknown) => !(error instanceof NotRetried) && (options.retryAny === true || transient(error));
  return pRetry(fn, {
    retries: options.retries ?? policy.retries,
    minTimeout: policy.minBackoffMs,
    maxTimeout: policy.maxBackoffMs,
    factor: 2,
    randomize: true,
    shouldRetry: ({ error }) => retryable(error),
    onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
      if (!retryable(error) || retriesLeft <= 0) return;
      const e = error as Partial<RegistryError>;
      log.warn(
        { op: operation, ref: formatRef(ref), status: e.status, code: e.code, attempt: attemptNumber, retriesLeft },
        `${transient(error) ? "transient failure" : "failure"}, retrying: ${error.message}`,
      );
      if (e.retryAfterMs !== undefined) await sleep(Math.min(e.retryAfterMs, policy.maxRetryAfterMs));
    },
  });
}

export interface TransportOptions {
  /** Use http:// for every registry (true) or for these hosts (host[:port]). Default https. */
  plainHttp?: boolean | readonly string[];
  /** Per-request timeout in ms (default 120000). */
  requestTimeoutMs?: number;
  /** HTTP requests in flight at once (default 6). */
  concurrency?: number;
  userAgent?: string;
}

/** HTTP to registries and token services for one client; `user` names the account in messages. */
export class Transport {
  /** HTTP requests sent (registry and token service), for figures and tests. */
  requests = 0;
  private readonly limit: LimitFunction;

  constructor(
    private readonly options: TransportOptions,
    private readonly log: Logger,
    private readonly user: string | undefined,
  ) {
    this.limit = pLimit(options.concurrency ?? 6);
  }

  /** https://host (http:// where the options say), docker.io's API host for docker.io. */
  baseUrl(registry: string): string {
    const plain = this.options.plainHttp;
    const http = plain === true || (Array.isArray(plain) && plain.includes(registry));
    const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
    return `${http ? "http" : "https"}://${host}`;
  }

  /** One request; a network failure becomes a RegistryError (transient for resets, refusals, timeouts). */
  async fetch(op: Op, url: string, authorization: string | undefined): Promise<RawResponse> {
    const headers: Record<string, string> = { "user-agent": this.options.userAgent ?? "slinky-containers", ...op.headers };
    if (authorization) headers.authorization = authorization;
    return this.limit(async () => {
      this.requests++;
      try {
        const res = await fetch(url, {
          method: op.method,
          headers,
          ...(op.body ? { body: new Uint8Array(op.body) } : {}),
          signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 120_000),
        });
        const body = op.method === "HEAD" ? Buffer.alloc(0) : Buffer.from(await res.arrayBuffer());
        this.log.debug({ method: op.method, url: redactUrl(url), status: res.status }, "registry request");
        return { status: res.status, headers: res.headers, body, url: res.url || url };
      } catch (error) {
        const code = networkErrorCode(error) ?? `network error (${error instanceof Error ? error.message : String(error)})`;
        const transient = TRANSIENT_CODES.has(code);
        this.log.debug({ method: op.method, url: redactUrl(url), code }, "registry request failed");
        throw new RegistryError(
          `${op.operation} ${formatRef(op.ref)}: ${code} talking to ${new URL(url).host}` + (transient ? "" : " (not retried)"),
          { ref: formatRef(op.ref), operation: op.operation, code, transient },
        );
      }
    });
  }

  /** The response if its status is one `op` accepts, else the RegistryError it means. */
  judge(op: Op, res: RawResponse): RawResponse {
    if (op.ok.includes(res.status) || op.pass?.includes(res.status)) return res;
    const ref = formatRef(op.ref);
    const { code, text } = registryErrorText(res.body);
    const detail = text ? ` (${text})` : "";
    const fields = { ref, operation: op.operation, status: res.status, ...(code ? { code } : {}) };
    if (res.status === 403) {
      throw new RegistryAuthError(
        `${op.operation} ${ref}: permission denied (403)${detail}: user ${JSON.stringify(this.user ?? "(anonymous)")} ` +
          `may not do this here; check the token's registry scopes`,
        fields,
      );
    }
    if (res.status === 404) {
      throw new RegistryNotFoundError(`${op.operation} ${ref}: not found (404)${detail}`, fields);
    }
    const transient = res.status === 429 || res.status === 408 || (res.status >= 500 && res.status !== 501 && res.status !== 505);
    throw new RegistryError(`${op.operation} ${ref}: the registry answered ${res.status}${detail}`, {
      ...fields,
      transient,
      ...(transient ? retryAfterField(res.headers) : {}),
    });
  }

  /** A 401 the client gives up on, saying why. */
  authFailure(op: Op, res: RawResponse, why: string): RegistryAuthError {
    const { code } = registryErrorText(res.body);
    return new RegistryAuthError(
      `${op.operation} ${formatRef(op.ref)}: authentication failed (401): ${why} ` + `for user ${JSON.stringify(this.user ?? "(anonymous)")}`,
      { ref: formatRef(op.ref), operation: op.operation, status: 401, ...(code ? { code } : {}) },
    );
  }
}
