/**
 * A fault-injecting HTTP proxy on 127.0.0.1 in front of a registry, for the
 * registry, cache and release tests and the promotion soak: chosen requests
 * answered with a status, reset before or after the registry applied them, or
 * delayed; every request recorded with what the client and the registry saw.
 */
import { createServer, type IncomingMessage, request as httpRequest, type ServerResponse } from "node:http";
import { freePort, listenOnLoopback } from "./harness.js";

export type FaultAction =
  /** Answer this status instead of the registry (the request never reaches it). */
  | { kind: "status"; status: number; headers?: Record<string, string>; body?: string }
  /** Reset the connection before the registry sees the request. */
  | { kind: "reset" }
  /** Let the registry apply the request and answer, then reset the connection: the answer is lost. */
  | { kind: "reset-after" }
  /** Forward the request after a delay. */
  | { kind: "delay"; ms: number };

export interface Fault {
  /** Which requests: method and a test on the path (with query). */
  method?: string;
  path: RegExp;
  action: FaultAction;
  /** How many matching requests get the fault (default: all). */
  times?: number;
  /** Matching requests let through before the fault starts (default 0). */
  after?: number;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  /** Status sent to the client, "reset" (before the registry), or "reset-after" (the registry answered `status`). */
  outcome: number | "reset" | "reset-after";
  /** What the registry answered, when the request reached it. */
  status?: number;
  at: number;
}

export interface FaultProxy {
  host: string;
  port: number;
  faults: Fault[];
  /** Consulted for requests no fault matched (randomized faults); undefined lets the request through. */
  chaos?: ((req: { method: string; path: string }) => FaultAction | undefined) | undefined;
  requests: ProxiedRequest[];
  stop(): Promise<void>;
}

/** An HTTP proxy on 127.0.0.1 in front of `target` (host:port) that injects faults. */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const [targetHost, targetPort] = target.split(":");
  const port = await freePort();
  const counters = new Map<Fault, { seen: number; hit: number }>();
  const proxy: FaultProxy = {
    host: `127.0.0.1:${port}`,
    port,
    faults: [],
    requests: [],
    stop: async () => {},
  };
  const pick = (req: IncomingMessage): Fault | undefined => {
    for (const fault of proxy.faults) {
      if (fault.method && fault.method !== req.method) continue;
      if (!fault.path.test(req.url ?? "")) continue;
      const count = counters.get(fault) ?? { seen: 0, hit: 0 };
      counters.set(fault, count);
      count.seen++;
      if (count.seen <= (fault.after ?? 0)) continue;
      if (count.hit >= (fault.times ?? Number.POSITIVE_INFINITY)) continue;
      count.hit++;
      return fault;
    }
    return undefined;
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const record: ProxiedRequest = { method: req.method ?? "", path: req.url ?? "", outcome: 0, at: Date.now() };
    proxy.requests.push(record);
    const action = pick(req)?.action ?? proxy.chaos?.({ method: record.method, path: record.path });
    if (action?.kind === "reset") {
      record.outcome = "reset";
      req.resume();
      req.socket.resetAndDestroy();
      return;
    }
    if (action?.kind === "status") {
      const { status, headers, body } = action;
      record.outcome = status;
      req.resume();
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(body ?? JSON.stringify({ errors: [{ code: "INJECTED", message: `fault injected by the test proxy (${status})` }] }));
      return;
    }
    const forward = () => {
      const upstream = httpRequest(
        { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers },
        (up) => {
          record.status = up.statusCode ?? 0;
          if (action?.kind === "reset-after") {
            // The registry has applied the request and answered; the client never hears it.
            up.resume();
            up.once("end", () => {
              record.outcome = "reset-after";
              req.socket.resetAndDestroy();
            });
            return;
          }
          record.outcome = up.statusCode ?? 0;
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on("error", () => {
        record.outcome = 502;
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(upstream);
    };
    if (action?.kind === "delay") setTimeout(forward, action.ms);
    else forward();
  });
  proxy.stop = await listenOnLoopback(server, port);
  return proxy;
}
