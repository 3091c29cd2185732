/**
 * The error every entry point throws for bad input, and how a value is shown
 * in it: credentials (`user:pass@`) redacted, cut at 200 characters, quoted.
 * (Its own module so that the catalog and the validation can both use it.)
 */

/** Longest part of a value shown in an error. */
export const SHOWN_LENGTH = 200;

const REDACTED = "[REDACTED]";

/**
 * `text` with credentials in URL-like values replaced: `scheme://user:pass@host`
 * and `user:pass@host/...` keep their host, lose the `user:pass`.
 */
export function redactCredentials(text: string): string {
  return (
    text
      // scheme://userinfo@
      .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]*@/gi, `$1${REDACTED}@`)
      // user:pass@host[:port]/ at the start of a value or word (no scheme)
      .replace(/(^|[\s"'(=,])[^\s/@"'<>(=,]+:[^\s/@"'<>]*@(?=[a-z0-9.-]+(?::\d+)?(?:\/|$|[\s"']))/gi, `$1${REDACTED}@`)
  );
}

/** The value as an error shows it: credentials redacted, cut at 200 characters, quoted. */
export function shown(value: unknown): string {
  if (typeof value !== "string") return JSON.stringify(value) ?? String(value);
  let text = redactCredentials(value);
  // A value with an @ before its first / may carry a password with characters the patterns miss.
  const at = text.indexOf("@");
  const slash = text.indexOf("/", text.indexOf("://") >= 0 ? text.indexOf("://") + 3 : 0);
  if (at >= 0 && (slash < 0 || at < slash) && !text.slice(0, at).endsWith(REDACTED)) {
    text = `${REDACTED}${text.slice(at)}`;
  }
  const cut = [...text];
  const body = cut.length > SHOWN_LENGTH ? `${cut.slice(0, SHOWN_LENGTH).join("")}…` : text;
  const suffix = cut.length > SHOWN_LENGTH ? ` (${cut.length} characters, shortened)` : "";
  return `${JSON.stringify(body)}${suffix}`;
}

/** Any input outside what the module accepts; the message names the field, the value and the valid values. */
export class InvalidInputError extends Error {
  readonly field: string;
  constructor(field: string, value: unknown, valid: readonly string[], why?: string) {
    const lead = why ? `invalid ${field} ${shown(value)}: ${why}` : `unknown ${field} ${shown(value)}`;
    super(`${lead}: valid values are ${valid.join(", ")}`);
    this.name = "InvalidInputError";
    this.field = field;
  }
}

/** Several bad inputs at once: one line each. */
export class InvalidInputsError extends Error {
  readonly errors: InvalidInputError[];
  constructor(errors: InvalidInputError[]) {
    super(errors.map((e) => e.message).join("\n"));
    this.name = "InvalidInputError";
    this.errors = errors;
  }
}


/** An error's message (or the thrown value as text), for a report row or a log line. */
export const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
