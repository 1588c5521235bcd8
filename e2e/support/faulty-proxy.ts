import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A fault-injecting HTTP proxy for tests: it listens on 127.0.0.1 (or `host`), forwards every request
 * unchanged (Host header included, so SigV4 signatures stay valid) to one target such as
 * MinIO, and can be told at runtime to misbehave like a sick S3:
 *
 *   status    answer 500/503/... with an S3-style XML error body (no body for HEAD)
 *   latency   wait before forwarding, and/or trickle the response at a bytes-per-second rate
 *   truncate  forward only the first N response bytes, then reset the connection ('reset')
 *             or end the body cleanly, short of its announced length ('end')
 *   corrupt   flip one byte of the response body at a given offset (length unchanged)
 *
 * Each fault applies to the requests its match selects: a method, a pattern tested against
 * the path and query, a fraction of the matching requests (spread evenly, deterministic),
 * and at most `times` of them. The first matching rule wins. Independently, `down()` makes
 * the whole server unreachable: 'refuse' closes the listener (connection refused), 'reset'
 * accepts and resets every connection. Every request is recorded with what happened to it,
 * so a test can count what the client really sent (e.g. the SDK's retries).
 */

export type Fault =
  | {
      kind: 'status';
      status: number;
      code?: string;
      message?: string;
      /** Extra response headers, e.g. `Retry-After` on a 429. */
      headers?: Record<string, string>;
    }
  | { kind: 'latency'; ms?: number; bytesPerSecond?: number }
  | { kind: 'truncate'; afterBytes: number; how?: 'reset' | 'end' }
  | { kind: 'corrupt'; atByte: number };

export interface FaultMatch {
  method?: string;
  /** Tested against the request's path and query (`/bucket/key?partNumber=2&uploadId=...`). */
  path?: RegExp;
  /** Applies to this share of the matching requests, evenly spread: 0.5 is every other one. */
  fraction?: number;
  /** Applies to at most this many requests, then the rule is spent. */
  times?: number;
}

export interface FaultRule {
  readonly fault: Fault;
  readonly match: FaultMatch;
  /** Requests this rule matched (before `fraction` and `times`). */
  readonly seen: number;
  /** Requests this rule was applied to. */
  readonly hits: number;
  remove(): void;
}

export interface ProxiedRequest {
  method: string;
  /** Path and query as the client sent them. */
  url: string;
  /** The fault applied, if any. */
  fault?: Fault['kind'];
  /** Status sent to the client (the target's, or the injected one); undefined if none was sent. */
  status?: number;
  /** Response body bytes sent to the client. */
  bytes: number;
  /** When the client's request arrived (Date.now()). */
  at: number;
}

export interface FaultyProxy {
  /** `http://HOST:PORT` */
  endpoint: string;
  /** `HOST:PORT` */
  host: string;
  readonly requests: ProxiedRequest[];
  /** Connections reset by `down('reset')` (they never became requests). */
  readonly resetConnections: number;
  inject(fault: Fault, match?: FaultMatch): FaultRule;
  /** 'refuse': stop listening; 'reset': accept and reset every connection. */
  down(how?: 'refuse' | 'reset'): Promise<void>;
  /** Listening and forwarding again (on the same port). */
  up(): Promise<void>;
  /** Removes every fault rule and brings the proxy up. The request log is kept. */
  heal(): Promise<void>;
  /** Recorded requests that satisfy `filter`. */
  count(filter?: { method?: string; path?: RegExp; fault?: Fault['kind'] | 'none' }): number;
  close(): Promise<void>;
}

const S3_ERROR_CODES: Record<number, string> = {
  500: 'InternalError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

class Rule implements FaultRule {
  seen = 0;
  hits = 0;
  removed = false;
  readonly fault: Fault;
  readonly match: FaultMatch;

  constructor(fault: Fault, match: FaultMatch) {
    if (match.fraction !== undefined && !(match.fraction > 0 && match.fraction <= 1))
      throw new RangeError('fraction must be in (0, 1]');
    this.fault = fault;
    this.match = match;
  }

  /** Whether this request is selected; counts it either way. */
  select(method: string, url: string): boolean {
    const { match } = this;
    if (this.removed) return false;
    if (match.method && match.method.toUpperCase() !== method) return false;
    if (match.path && !match.path.test(url)) return false;
    if (match.times !== undefined && this.hits >= match.times) return false;
    const n = this.seen++;
    // Evenly spread and deterministic: request n is hit when floor((n+1)f) > floor(nf).
    const fraction = match.fraction ?? 1;
    if (Math.floor((n + 1) * fraction) <= Math.floor(n * fraction)) return false;
    this.hits++;
    return true;
  }

  remove(): void {
    this.removed = true;
  }
}

export interface FaultyProxyOptions {
  /** The address to listen on [127.0.0.1]; the end-to-end suite's pods reach the bridge's. */
  host?: string;
}

export async function startFaultyProxy(
  target: string,
  options: FaultyProxyOptions = {},
): Promise<FaultyProxy> {
  const listenHost = options.host ?? '127.0.0.1';
  const targetUrl = new URL(target);
  const rules: Rule[] = [];
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  let downMode: 'refuse' | 'reset' | undefined;
  let requestIds = 0;
  let resetConnections = 0;

  const server: Server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const record: ProxiedRequest = { method, url, bytes: 0, at: Date.now() };
    requests.push(record);
    const rule = rules.find((r) => r.select(method, url));
    if (rule) record.fault = rule.fault.kind;
    handle(req, res, record, rule?.fault).catch(() => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  server.on('connection', (socket: Socket) => {
    if (downMode === 'reset') {
      resetConnections++;
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    record: ProxiedRequest,
    fault: Fault | undefined,
  ): Promise<void> {
    if (fault?.kind === 'status') {
      // Read the request body first, as S3 does, so the client is not cut off mid-upload.
      for await (const _ of req);
      const id = `faulty-proxy-${++requestIds}`;
      const code = fault.code ?? S3_ERROR_CODES[fault.status] ?? 'InternalError';
      const body =
        req.method === 'HEAD'
          ? ''
          : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
            `<Message>${fault.message ?? 'injected by the faulty proxy'}</Message>` +
            `<Resource>${escapeXml(record.url.split('?')[0] ?? '')}</Resource><RequestId>${id}</RequestId></Error>`;
      record.status = fault.status;
      res.writeHead(fault.status, {
        'Content-Type': 'application/xml',
        'Content-Length': Buffer.byteLength(body),
        'x-amz-request-id': id,
        ...fault.headers,
      });
      res.end(body);
      return;
    }
    if (fault?.kind === 'latency' && fault.ms) await sleep(fault.ms);
    const upstream = await forward(req);
    const headers = { ...upstream.headers };
    if (fault?.kind === 'truncate' && fault.how === 'end') delete headers['content-length'];
    record.status = upstream.statusCode ?? 502;
    res.writeHead(record.status, headers);
    try {
      await relay(upstream, res, record, fault);
    } finally {
      upstream.destroy();
    }
  }

  async function relay(
    upstream: IncomingMessage,
    res: ServerResponse,
    record: ProxiedRequest,
    fault: Fault | undefined,
  ): Promise<void> {
    let sent = 0;
    for await (const piece of upstream) {
      let chunk = piece as Buffer;
      if (fault?.kind === 'truncate' && sent + chunk.length >= fault.afterBytes) {
        const last = chunk.subarray(0, fault.afterBytes - sent);
        await send(res, last);
        record.bytes = sent + last.length;
        await cut(res, fault.how ?? 'reset');
        return;
      }
      if (fault?.kind === 'corrupt') chunk = flipByte(chunk, fault.atByte - sent);
      await send(res, chunk, fault?.kind === 'latency' ? fault.bytesPerSecond : undefined);
      sent += chunk.length;
      record.bytes = sent;
    }
    res.end();
  }

  function forward(req: IncomingMessage): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const out = httpRequest(
        {
          host: targetUrl.hostname,
          port: targetUrl.port,
          method: req.method,
          path: req.url,
          headers: forwardedHeaders(req),
        },
        resolve,
      );
      out.once('error', reject);
      req.once('aborted', () => out.destroy());
      req.pipe(out);
    });
  }

  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, listenHost, () => {
        server.off('error', reject);
        port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  await listen();

  const proxy: FaultyProxy = {
    endpoint: `http://${listenHost}:${port}`,
    host: `${listenHost}:${port}`,
    requests,
    get resetConnections() {
      return resetConnections;
    },
    inject(fault, match = {}) {
      const rule = new Rule(fault, match);
      rules.push(rule);
      return rule;
    },
    async down(how = 'refuse') {
      downMode = how;
      for (const socket of sockets) socket.resetAndDestroy();
      if (how === 'refuse') await stopListening();
    },
    async up() {
      downMode = undefined;
      if (!server.listening) await listen();
    },
    async heal() {
      for (const rule of rules.splice(0)) rule.remove();
      await proxy.up();
    },
    count(filter = {}) {
      return requests.filter(
        (r) =>
          (!filter.method || r.method === filter.method.toUpperCase()) &&
          (!filter.path || filter.path.test(r.url)) &&
          (!filter.fault || (filter.fault === 'none' ? !r.fault : r.fault === filter.fault)),
      ).length;
    },
    async close() {
      downMode = 'refuse';
      await stopListening();
    },
  };
  return proxy;
}

/** Writes a chunk, trickled in 16 KiB slices at `bytesPerSecond` if given. */
async function send(res: ServerResponse, chunk: Buffer, bytesPerSecond?: number): Promise<void> {
  if (!bytesPerSecond) {
    if (chunk.length > 0) await write(res, chunk);
    return;
  }
  for (let i = 0; i < chunk.length; i += 16 * 1024) {
    const slice = chunk.subarray(i, i + 16 * 1024);
    await write(res, slice);
    await sleep((slice.length / bytesPerSecond) * 1000);
  }
}

/** Ends a response early: cleanly ('end', a short body) or with a TCP reset. */
async function cut(res: ServerResponse, how: 'reset' | 'end'): Promise<void> {
  if (how === 'end') {
    res.end();
    return;
  }
  // Let the bytes written so far leave first.
  await sleep(50);
  res.socket?.resetAndDestroy();
}

/** The chunk with the byte at `offset` inverted, if the offset falls inside it. */
function flipByte(chunk: Buffer, offset: number): Buffer {
  if (offset < 0 || offset >= chunk.length) return chunk;
  const copy = Buffer.from(chunk);
  copy[offset] = (copy[offset] ?? 0) ^ 0xff;
  return copy;
}

/** Node has already answered `Expect: 100-continue`, and SigV4 never signs that header. */
function forwardedHeaders(req: IncomingMessage): IncomingMessage['headers'] {
  const headers = { ...req.headers };
  delete headers.expect;
  return headers;
}

function write(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (res.destroyed) return reject(new Error('client went away'));
    if (res.write(chunk)) return resolve();
    const onDrain = () => {
      res.off('close', onClose);
      resolve();
    };
    const onClose = () => {
      res.off('drain', onDrain);
      reject(new Error('client went away'));
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
