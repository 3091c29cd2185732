/**
 * Registry authentication: the `WWW-Authenticate` challenge (basic, or a
 * bearer token from the realm's token service, as GitLab's registry, Docker
 * Hub and GHCR ask), the tokens cached per realm, service and scope, and one
 * authenticated attempt of a request (`Authenticator.send`: at most two
 * authentication rounds). The password is used only in request headers and
 * is registered with the log scrubber, like every token.
 */
import { registerSecret } from "../core/log.js";
import { RegistryAuthError, RegistryError } from "./errors.js";
import { formatRef } from "./reference.js";
import { type Op, type RawResponse, retryAfterField, type Transport } from "./transport.js";

interface Challenge {
  scheme: "basic" | "bearer";
  params: Record<string, string>;
}

type HostAuth = { kind: "basic" } | { kind: "bearer"; realm: string; service: string | undefined };

/** Parse `Bearer realm="...",service="...",scope="..."` (or Basic). */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const match = /^\s*(basic|bearer)\b(.*)$/i.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let m = re.exec(match[2] ?? ""); m; m = re.exec(match[2] ?? "")) {
    params[(m[1] ?? "").toLowerCase()] = (m[2] ?? m[3] ?? "").replace(/\\(.)/g, "$1");
  }
  return { scheme: (match[1] ?? "").toLowerCase() as "basic" | "bearer", params };
}

/**
 * Whether two token scopes grant the same: the registry may list a scope's
 * actions in any order ("pull,push" or "push,pull") from one challenge to the next.
 */
export function sameScope(a: string, b: string): boolean {
  const norm = (scope: string) =>
    scope
      .split(" ")
      .filter(Boolean)
      .map((part) => {
        const at = part.lastIndexOf(":");
        return `${part.slice(0, at)}:${part.slice(at + 1).split(",").sort().join(",")}`;
      })
      .sort()
      .join(" ");
  return norm(a) === norm(b);
}

/** The token scope an operation needs: pull to read, delete to delete, pull,push otherwise. */
function scopeFor(op: Op): string {
  const actions = op.method === "GET" || op.method === "HEAD" ? "pull" : op.method === "DELETE" ? "delete" : "pull,push";
  return `repository:${op.ref.repository}:${actions}${op.extraScope ? ` ${op.extraScope}` : ""}`;
}

/** One set of credentials (or none) and what the registries it talked to asked for. */
export class Authenticator {
  private readonly hostAuth = new Map<string, HostAuth>();
  private readonly tokens = new Map<string, { token: string; expiresAt: number }>();

  constructor(
    private readonly transport: Transport,
    private readonly username: string | undefined,
    private readonly password: string | undefined,
  ) {
    registerSecret(password);
  }

  /** One attempt of `op`, including at most two authentication rounds; judged by the transport. */
  async send(op: Op): Promise<RawResponse> {
    const url = op.url ?? `${this.transport.baseUrl(op.ref.registry)}/v2/${op.ref.repository}/${op.path ?? ""}`;
    const host = op.ref.registry;
    const wanted = scopeFor(op);
    let authorization = await this.cachedAuthorization(host, wanted, op);
    let sentScope: string | undefined = authorization ? wanted : undefined;
    // A cached token may have expired early at the registry: it earns one fresh fetch.
    let fresh = false;
    for (let round = 0; ; round++) {
      const res = await this.transport.fetch(op, url, authorization);
      if (res.status !== 401) return this.transport.judge(op, res);
      const challenge = parseChallenge(res.headers.get("www-authenticate"));
      if (!challenge || round >= 2) throw this.transport.authFailure(op, res, "the registry rejected the credentials");
      if (challenge.scheme === "basic") {
        if (!this.username || !this.password) throw this.transport.authFailure(op, res, "the registry requires a username and password");
        if (authorization?.startsWith("Basic ")) throw this.transport.authFailure(op, res, "the registry rejected the username or password");
        this.hostAuth.set(host, { kind: "basic" });
        authorization = this.basicHeader();
        continue;
      }
      const realm = challenge.params.realm;
      if (!realm) throw this.transport.authFailure(op, res, "the bearer challenge names no token realm");
      const challenged = challenge.params.scope ?? wanted;
      const scope = op.extraScope && !challenged.includes(op.extraScope) ? `${challenged} ${op.extraScope}` : challenged;
      if (sentScope !== undefined && sameScope(sentScope, scope) && fresh) {
        throw this.transport.authFailure(
          op,
          res,
          challenge.params.error === "insufficient_scope" ? `the token lacks the scope ${scope}` : "the registry rejected the bearer token",
        );
      }
      this.hostAuth.set(host, { kind: "bearer", realm, service: challenge.params.service });
      const token = await this.fetchToken(op, realm, challenge.params.service, scope, sentScope !== undefined && sameScope(sentScope, scope));
      fresh = true;
      this.tokens.set(this.tokenKey(realm, challenge.params.service, wanted), token);
      authorization = `Bearer ${token.token}`;
      sentScope = scope;
    }
  }

  private basicHeader(): string {
    return `Basic ${Buffer.from(`${this.username}:${this.password}`).toString("base64")}`;
  }

  private tokenKey(realm: string, service: string | undefined, scope: string): string {
    return `${realm}|${service ?? ""}|${scope}`;
  }

  /** An Authorization header for a host whose scheme is already known, if any. */
  private async cachedAuthorization(host: string, scope: string, op: Op): Promise<string | undefined> {
    const auth = this.hostAuth.get(host);
    if (!auth) return undefined;
    if (auth.kind === "basic") return this.basicHeader();
    const key = this.tokenKey(auth.realm, auth.service, scope);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    const token = await this.fetchToken(op, auth.realm, auth.service, scope);
    this.tokens.set(key, token);
    return `Bearer ${token.token}`;
  }

  /** The token service's answer for one scope (basic credentials if we have them). */
  private async fetchToken(
    op: Op,
    realm: string,
    service: string | undefined,
    scope: string,
    force = false,
  ): Promise<{ token: string; expiresAt: number }> {
    const key = this.tokenKey(realm, service, scope);
    const cached = this.tokens.get(key);
    if (!force && cached && cached.expiresAt > Date.now()) return cached;
    const url = new URL(realm);
    if (service) url.searchParams.set("service", service);
    for (const s of scope.split(" ").filter(Boolean)) url.searchParams.append("scope", s);
    if (this.username) url.searchParams.set("account", this.username);
    const headers: Record<string, string> = {};
    if (this.username && this.password) headers.authorization = this.basicHeader();
    const tokenOp: Op = { operation: `${op.operation} (token)`, ref: op.ref, method: "GET", ok: [200] };
    const res = await this.transport.fetch(tokenOp, url.toString(), headers.authorization);
    if (res.status === 401 || res.status === 403) {
      throw new RegistryAuthError(
        `${op.operation} ${formatRef(op.ref)}: authentication failed: the token service ${url.origin}${url.pathname} ` +
          `answered ${res.status} for user ${JSON.stringify(this.username ?? "(anonymous)")} ` +
          `(check the username and password or token, and its registry scopes)`,
        { ref: formatRef(op.ref), operation: op.operation, status: res.status },
      );
    }
    if (res.status !== 200) {
      const transient = res.status >= 500 || res.status === 429;
      throw new RegistryError(
        `${op.operation} ${formatRef(op.ref)}: the token service answered ${res.status}`,
        {
          ref: formatRef(op.ref),
          operation: op.operation,
          status: res.status,
          transient,
          ...(transient ? retryAfterField(res.headers) : {}),
        },
      );
    }
    let doc: { token?: string; access_token?: string; expires_in?: number };
    try {
      doc = JSON.parse(res.body.toString("utf8")) as typeof doc;
    } catch {
      throw new RegistryError(`${op.operation} ${formatRef(op.ref)}: the token service sent no JSON`, {
        ref: formatRef(op.ref),
        operation: op.operation,
      });
    }
    const token = doc.token ?? doc.access_token;
    if (!token) {
      throw new RegistryError(`${op.operation} ${formatRef(op.ref)}: the token service sent no token`, {
        ref: formatRef(op.ref),
        operation: op.operation,
      });
    }
    registerSecret(token);
    const lifetime = Math.max(60, doc.expires_in ?? 60) * 1000;
    const entry = { token, expiresAt: Date.now() + lifetime - 10_000 };
    this.tokens.set(key, entry);
    return entry;
  }
}
