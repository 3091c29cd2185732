/**
 * What the kubelet and slurm-operator's clients do over the network, for the
 * cluster tests: HTTP and TCP probes judged as Kubernetes judges them, an HTTP
 * GET, and the HS256 JWT slurmrestd accepts.
 */
import { createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";

/** HS256 JWT for slurmrestd (auth/jwt with jwt_key), as the operator's token generator makes one. */
export function hs256Jwt(key: Buffer, user: string, lifetimeSeconds = 600): string {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ iat: now, exp: now + lifetimeSeconds, sun: user })}`;
  return `${body}.${createHmac("sha256", key).update(body).digest("base64url")}`;
}

/** One HTTP GET on loopback; status and body, or the connection error. */
export async function httpGet(
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 10_000,
): Promise<{ status: number; body: string } | { error: string }> {
  try {
    const response = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.status, body: await response.text() };
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return { error: cause?.code ?? cause?.message ?? String(error) };
  }
}

/**
 * An HTTP probe, as Kubernetes' httpGet: passes on any status from 200 to 399
 * (a redirect is not followed: the kubelet counts it a success), fails on
 * any other status or no answer. Slurm 25.11's /livez answers 204.
 */
export async function httpProbe(url: string, timeoutMs = 10_000): Promise<{ passed: boolean; status?: number; error?: string }> {
  try {
    const response = await fetch(url, { redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
    await response.arrayBuffer();
    return { passed: response.status >= 200 && response.status < 400, status: response.status };
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return { passed: false, error: cause?.code ?? cause?.message ?? String(error) };
  }
}

/** A TCP probe, as Kubernetes' tcpSocket: the port accepts a connection. */
export async function tcpProbe(port: number, host = "127.0.0.1", timeoutMs = 5_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}


/**
 * `ssh`'s arguments for a user logging in as root to 127.0.0.1:`port` with
 * `identity`, trusting only `hostKey` (a public key line, written as the one
 * entry of `knownHosts`), and running `command` there.
 */
export function sshArgs(o: { identity: string; port: number; hostKey: string; knownHosts: string; command: string }): string[] {
  writeFileSync(o.knownHosts, `[127.0.0.1]:${o.port} ${o.hostKey.trim().split(/\s+/).slice(0, 2).join(" ")}\n`);
  return [
    "-F", "/dev/null", "-i", o.identity, "-p", String(o.port),
    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
    "-o", `UserKnownHostsFile=${o.knownHosts}`, "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "ConnectTimeout=20",
    "root@127.0.0.1", o.command,
  ];
}
