import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface UpstreamRequestRecord {
  method: string;
  path: string;
  service?: string;
  /** v2 command or, for v0 POSTs, 'fetch'. */
  command?: string;
  /** `ref-prefix` arguments of an ls-refs: `git fetch` sends its refspecs' prefixes, `ls-remote` none. */
  refPrefixes?: string[];
  viaCache: boolean;
  authorized: boolean;
  /** When it arrived (Date.now()). */
  at: number;
}

export interface GitUpstream {
  /** `127.0.0.1:port` (or the listen host), the host part of repository ids. */
  host: string;
  url(repo: string): string;
  requests: UpstreamRequestRecord[];
  /** Number of upload-pack POSTs that sent a pack (fetch command), split by whether the cache proxied them. */
  packResponses(options: { viaCache: boolean }): number;
  /**
   * Make every request fail with this status and these headers (an outage, or a throttle with
   * `Retry-After`); undefined restores service.
   */
  failWith(status: number | undefined, headers?: Record<string, string>): void;
  /** Hold every upload-pack response this long before git starts answering (a slow upstream). */
  delayUploadPack(ms: number): void;
  /**
   * Answer every request for a pack (a fetch command) with 500 while ref listings still work:
   * a fetch that fails after upstream listed its refs.
   */
  refusePacks(refuse: boolean): void;
  close(): Promise<void>;
}

export interface BasicAuth {
  user: string;
  password: string;
  /** Path prefixes (`/private.git/`) that need these credentials; without it, every path does. */
  paths?: string[];
}

/**
 * A real git smart-HTTP upstream: `git http-backend` behind a Node HTTP server (the CGI
 * glue is ours, the protocol handling is git's). Optional basic auth (for every repository or
 * some), and a record of every request so tests can count what reached upstream.
 */
export async function startGitUpstream(
  root: string,
  options: {
    basicAuth?: BasicAuth;
    listenHost?: string;
    /** Answers requests git does not (the LFS stand-in's API); returns false to let git answer. */
    extraRoutes?: (req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer) => Promise<boolean>;
  } = {},
): Promise<GitUpstream> {
  const requests: UpstreamRequestRecord[] = [];
  const faults: Faults = { delayMs: 0, refusePacks: false };
  const server: Server = createServer((req, res) => {
    handle(root, req, res, options, requests, { ...faults }).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  // The end-to-end suite listens on its pod network's host address, so pods reach it.
  const listenHost = options.listenHost ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(0, listenHost, resolve));
  const host = `${listenHost}:${(server.address() as AddressInfo).port}`;
  return {
    host,
    url: (repo) => `http://${host}/${repo}`,
    requests,
    packResponses: ({ viaCache }) =>
      requests.filter(
        (r) =>
          r.method === 'POST' &&
          r.path.endsWith('/git-upload-pack') &&
          r.command === 'fetch' &&
          r.viaCache === viaCache &&
          r.authorized,
      ).length,
    failWith: (status, headers) => {
      faults.failure = status === undefined ? undefined : { status, headers };
    },
    delayUploadPack: (ms) => {
      faults.delayMs = ms;
    },
    refusePacks: (refuse) => {
      faults.refusePacks = refuse;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What the test asked the upstream to get wrong, as of a request's arrival. */
interface Faults {
  failure?: { status: number; headers?: Record<string, string> };
  delayMs: number;
  refusePacks: boolean;
}

async function handle(
  root: string,
  req: IncomingMessage,
  res: ServerResponse,
  options: Parameters<typeof startGitUpstream>[1] & object,
  requests: UpstreamRequestRecord[],
  faults: Faults,
): Promise<void> {
  const { failure, delayMs } = faults;
  const body = await readAll(req);
  const url = new URL(req.url ?? '/', 'http://upstream');
  if (failure === undefined && (await options.extraRoutes?.(req, res, url, body))) return;
  const basicAuth = options.basicAuth;
  const auth = basicAuth?.paths?.every((p) => !url.pathname.startsWith(p)) ? undefined : basicAuth;
  const authorized =
    !auth ||
    req.headers.authorization === `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`;
  requests.push({
    method: req.method ?? 'GET',
    path: url.pathname,
    service: url.searchParams.get('service') ?? undefined,
    command: commandOf(req, body),
    refPrefixes: refPrefixesOf(body),
    viaCache: req.headers.via === '1.1 gitmirror',
    authorized,
    at: Date.now(),
  });
  if (failure) {
    res.writeHead(failure.status, failure.headers).end('upstream outage');
    return;
  }
  if (!authorized) {
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="upstream"' }).end();
    return;
  }
  if (faults.refusePacks && requests.at(-1)?.command === 'fetch') {
    res.writeHead(500).end('pack generation failed');
    return;
  }
  if (delayMs > 0 && url.pathname.endsWith('/git-upload-pack'))
    await new Promise((r) => setTimeout(r, delayMs));
  await runBackend(root, req, res, url, body, auth?.user);
}

function commandOf(req: IncomingMessage, body: Buffer): string | undefined {
  if (req.method !== 'POST') return undefined;
  const text = req.headers['content-encoding'] === 'gzip' ? '' : body.toString('latin1');
  const match = /command=([a-z-]+)/.exec(text);
  if (match) return match[1];
  return text.includes('want ') || req.headers['content-encoding'] === 'gzip' ? 'fetch' : undefined;
}

function refPrefixesOf(body: Buffer): string[] | undefined {
  const prefixes = [...body.toString('latin1').matchAll(/ref-prefix (\S+)\n/g)].map((m) => m[1]!);
  return prefixes.length > 0 ? prefixes : undefined;
}

function runBackend(
  root: string,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  body: Buffer,
  user?: string,
): Promise<void> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    PATH_INFO: url.pathname,
    QUERY_STRING: url.search.slice(1),
    REQUEST_METHOD: req.method ?? 'GET',
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    CONTENT_LENGTH: String(body.length),
    REMOTE_ADDR: '127.0.0.1',
    REMOTE_USER: user ?? 'anonymous',
    HTTP_GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
    HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
  };
  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
  // http-backend may exit without reading its input (a GET, an error); that is not our failure.
  child.stdin.on('error', () => {});
  child.stdin.end(body);
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    let headDone = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (headDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headDone = true;
      writeCgiHead(res, head.subarray(0, end).toString('latin1'));
      res.write(head.subarray(end + 4));
    });
    child.on('close', () => {
      if (!headDone) res.writeHead(500);
      res.end();
      resolve();
    });
  });
}

function writeCgiHead(res: ServerResponse, text: string): void {
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
    else headers[name] = value;
  }
  res.writeHead(status, headers);
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
