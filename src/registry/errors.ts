/**
 * What the registry client throws: one RegistryError carrying the operation,
 * reference, status and whether it is transient (retried), its three
 * never-retried kinds, and the text of a registry's error document.
 */

/** Any failure talking to a registry; `transient` failures are retried. */
export class RegistryError extends Error {
  readonly ref: string;
  readonly operation: string;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly transient: boolean;
  readonly retryAfterMs: number | undefined;
  constructor(
    message: string,
    fields: {
      ref: string;
      operation: string;
      status?: number;
      code?: string;
      transient?: boolean;
      retryAfterMs?: number;
    },
  ) {
    super(message);
    this.name = "RegistryError";
    this.ref = fields.ref;
    this.operation = fields.operation;
    this.status = fields.status;
    this.code = fields.code;
    this.transient = fields.transient ?? false;
    this.retryAfterMs = fields.retryAfterMs;
  }
}

/** 401/403: wrong credentials, expired token or missing permission. Never retried. */
export class RegistryAuthError extends RegistryError {
  constructor(message: string, fields: ConstructorParameters<typeof RegistryError>[1]) {
    super(message, { ...fields, transient: false });
    this.name = "RegistryAuthError";
  }
}

/** 404: no such repository, tag, manifest or blob. Never retried. */
export class RegistryNotFoundError extends RegistryError {
  constructor(message: string, fields: ConstructorParameters<typeof RegistryError>[1]) {
    super(message, { ...fields, transient: false });
    this.name = "RegistryNotFoundError";
  }
}

/** The bytes read back do not hash to the digest expected. Never retried. */
export class DigestMismatchError extends RegistryError {
  constructor(message: string, fields: ConstructorParameters<typeof RegistryError>[1]) {
    super(message, { ...fields, transient: false });
    this.name = "DigestMismatchError";
  }
}

/** An error `RegistryClient.retry` never retries, even with `retryAny`. */
export class NotRetried extends Error {}

/** The first error of a registry error document (`{"errors":[...]}`), or the body's start. */
export function registryErrorText(body: Buffer): { code?: string; text: string } {
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first) {
      const code = first.code;
      const message = `${first.code ?? ""}${first.message ? `: ${first.message}` : ""}`;
      return { ...(code ? { code } : {}), text: message.slice(0, 300) };
    }
  } catch {
    // not a registry error document
  }
  return { text: body.toString("utf8").replace(/\s+/g, " ").trim().slice(0, 200) };
}
