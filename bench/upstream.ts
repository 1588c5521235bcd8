import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * `git http-backend` as a CGI behind a Node HTTP server: the benchmark's upstream and its
 * "direct" serving baseline. Unlike the test suite's upstream (which buffers request
 * bodies and writes responses without backpressure, fine for small fixtures), this one
 * streams both ways with backpressure, so a 300 MiB pack to a slow client costs neither
 * side memory and the comparison with the sidecar is about serving, not buffering.
 */
export interface HttpBackend {
  /** `127.0.0.1:port` */
  host: string;
  url(path: string): string;
  close(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

/**
 * Runs the server in its own Node process, like the sidecar it is compared with: sharing
 * the benchmark driver's event loop would slow its reads of git's output, and slower reads
 * mean bigger chunks and less CPU per byte, which would skew the comparison.
 */
export async function startHttpBackend(projectRoot: string): Promise<HttpBackend> {
  // stdin is a pipe only so that the server sees it close when this process dies, however.
  const child = spawn(process.execPath, [SELF, projectRoot], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const [line] = (await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line'),
    exited.then(() => {
      throw new Error('the git http-backend server exited at start');
    }),
  ])) as [string];
  const host = line.trim();
  return {
    host,
    url: (path) => `http://${host}/${path}`,
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
    },
  };
}

async function serve(projectRoot: string): Promise<void> {
  const server = createServer((req, res) => cgi(projectRoot, req, res));
  // Pack responses of large repos stream for minutes; only idle sockets should time out.
  server.requestTimeout = 0;
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  process.stdout.write(`127.0.0.1:${(server.address() as AddressInfo).port}\n`);
  process.stdin.on('close', () => process.exit(0)).resume();
}

function cgi(projectRoot: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://backend');
  const length = req.headers['content-length'];
  const child = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: projectRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      // Absent for chunked requests: http-backend then reads the body to EOF.
      ...(length ? { CONTENT_LENGTH: length } : {}),
      REMOTE_ADDR: '127.0.0.1',
      // http-backend hands this to upload-pack as GIT_PROTOCOL (v2 negotiation).
      HTTP_GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
      HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
    },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  // http-backend may exit without reading its input (a GET, an error).
  child.stdin.on('error', () => {});
  req.pipe(child.stdin);
  res.on('close', () => {
    if (!res.writableFinished) child.kill();
  });
  child.once('error', () => {
    if (!res.headersSent) res.writeHead(500);
    res.end();
  });
  readCgiHead(child.stdout).then(
    (head) => {
      if (!head) {
        if (!res.headersSent) res.writeHead(502);
        res.end();
        return;
      }
      res.writeHead(head.status, head.headers);
      if (head.rest.length) res.write(head.rest);
      child.stdout.pipe(res);
    },
    () => res.destroy(),
  );
}

interface CgiHead {
  status: number;
  headers: Record<string, string>;
  /** Body bytes that arrived with the head. */
  rest: Buffer;
}

/** Reads up to the blank line that ends the CGI head; the rest of stdout stays paused. */
function readCgiHead(stdout: NodeJS.ReadableStream): Promise<CgiHead | undefined> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      stdout.off('data', onData);
      stdout.off('end', onEnd);
      stdout.pause();
      resolve({
        ...parseHead(buffered.subarray(0, end).toString('latin1')),
        rest: buffered.subarray(end + 4),
      });
    };
    const onEnd = () => resolve(undefined);
    stdout.on('data', onData);
    stdout.once('end', onEnd);
    stdout.once('error', reject);
  });
}

function parseHead(text: string): Omit<CgiHead, 'rest'> {
  const headers: Record<string, string> = {};
  let status = 200;
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers[name] = value;
  }
  return { status, headers };
}

if (process.argv[1] && resolve(process.argv[1]) === SELF) await serve(process.argv[2]!);
