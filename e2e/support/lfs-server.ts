import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { abandonWait, waitFor } from '../../testing/wait.ts';

const exec = promisify(execFile);

/**
 * git-lfs's own test server, lfstest-gitserver (built by e2e/tools/ensure-tools.ts): git smart
 * HTTP for every bare repository in its directory (through `git http-backend`) and, at
 * `/{repo}.git/info/lfs`, the batch API, basic transfers (`/storage/{oid}`) and the locks API,
 * with objects held in memory. Every LFS request needs credentials (Basic `user:pass`; a
 * missing one gets 401 with `LFS-Authenticate`, a wrong one 403); git requests need none.
 * Objects whose content is one of its magic strings misbehave on purpose
 * (`storage-download-corrupt` is served upper-cased, `storage-download-retry-range` cut off
 * half way under a full Content-Length).
 *
 * It listens on 127.0.0.1 with a random port (httptest) and writes its URL to a file. Its log
 * (stderr) has one line per request, which is how tests count what reached it.
 */
export interface LfsTestServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT` */
  host: string;
  /** Where its repositories live (`{name}.git`, one path segment each). */
  reposDir: string;
  /** A new empty bare repository that accepts pushes over HTTP. */
  createRepo(name: string): Promise<void>;
  /** Downloads of an object's bytes from its storage so far. */
  storageGets(oid: string): number;
  /** Batch API requests so far, optionally only those naming an oid. */
  batchRequests(oid?: string): number;
  log(): string;
  /**
   * Makes it reachable at `listenHost` (the pod network's host address): a forwarder there
   * that passes requests through and rewrites the server's own 127.0.0.1 URL in its LFS
   * answers (the download and upload hrefs) to the forwarder's, as a reverse proxy in front
   * of an LFS server does. Resolves with the forwarder's `host:port`.
   */
  exposeOn(listenHost: string): Promise<string>;
  /** Kills it: everything it held is gone (objects live in its memory). */
  stop(): Promise<void>;
}

const STATE_FILES = {
  LFSTEST_URL: 'url',
  LFSTEST_SSL_URL: 'ssl-url',
  LFSTEST_CLIENT_CERT_URL: 'client-cert-url',
  LFSTEST_CERT: 'cert',
  LFSTEST_CLIENT_CERT: 'client-cert',
  LFSTEST_CLIENT_KEY: 'client-key',
  LFSTEST_CLIENT_KEY_ENCRYPTED: 'client-key-encrypted',
};

const running = new Map<ChildProcess, string>();
process.once('exit', () => {
  for (const [child, dir] of running) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

export async function startLfsTestServer(): Promise<LfsTestServer> {
  const binary = process.env.GITMIRROR_E2E_LFSTEST_GITSERVER;
  if (!binary) throw new Error('GITMIRROR_E2E_LFSTEST_GITSERVER is not set: run through `npm run e2e`');
  const dir = await mkdtemp(join(tmpdir(), 'gitmirror-lfstest-'));
  const reposDir = join(dir, 'repos');
  await mkdir(reposDir);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, LFSTEST_DIR: reposDir };
  for (const [name, file] of Object.entries(STATE_FILES)) env[name] = join(dir, file);
  let output = '';
  const child = spawn(binary, [], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  running.set(child, dir);
  child.once('error', (err) => (output += `\nspawn failed: ${err.message}`));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  const url = await waitForUrl(join(dir, 'url'), child, () => output);
  const forwarders: (() => Promise<void>)[] = [];
  const count = (pattern: RegExp) => output.split('\n').filter((line) => pattern.test(line)).length;
  return {
    url,
    host: url.slice('http://'.length),
    reposDir,
    async createRepo(name) {
      const bare = join(reposDir, `${name}.git`);
      await exec('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
      await exec('git', ['config', 'http.receivepack', 'true'], { cwd: bare });
    },
    storageGets: (oid) => count(new RegExp(`storage GET ${oid}\\b`)),
    // The request body is logged on its own line, `{"operation":...}`; answers start otherwise.
    batchRequests: (oid) =>
      oid
        ? count(new RegExp(`\\] \\{"operation":.*"oid":"${oid}"`))
        : count(/git lfs POST \S+\/objects\/batch/),
    log: () => output,
    exposeOn: async (listenHost) => {
      const forwarder = await forwardRewriting(url, listenHost);
      forwarders.push(forwarder.close);
      return forwarder.host;
    },
    async stop() {
      for (const close of forwarders) await close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((resolve) => child.once('exit', resolve));
      }
      running.delete(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function waitForUrl(file: string, child: ChildProcess, output: () => string): Promise<string> {
  return waitFor(
    'lfstest-gitserver to write its URL',
    async () => {
      if (child.exitCode !== null || output().includes('spawn failed'))
        abandonWait(`lfstest-gitserver exited at start: ${output()}`);
      const url = (await readFile(file, 'utf8').catch(() => '')).trim();
      return /^http:\/\/127\.0\.0\.1:\d+$/.test(url) ? url : undefined;
    },
    { timeoutMs: 30_000 },
  );
}

async function forwardRewriting(
  target: string,
  listenHost: string,
): Promise<{ host: string; close(): Promise<void> }> {
  const targetUrl = new URL(target);
  let publicUrl = '';
  const server = createServer((req, res) => {
    const upstream = httpRequest(
      {
        host: targetUrl.hostname,
        port: targetUrl.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: targetUrl.host },
      },
      async (answer) => {
        const type = String(answer.headers['content-type'] ?? '');
        if (!type.includes('application/vnd.git-lfs+json')) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        for await (const chunk of answer) chunks.push(chunk as Buffer);
        const body = Buffer.from(Buffer.concat(chunks).toString('utf8').replaceAll(target, publicUrl));
        const headers = { ...answer.headers, 'content-length': String(body.length) };
        delete headers['transfer-encoding'];
        res.writeHead(answer.statusCode ?? 502, headers).end(body);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, listenHost, resolve));
  const host = `${listenHost}:${(server.address() as AddressInfo).port}`;
  publicUrl = `http://${host}`;
  return {
    host,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
