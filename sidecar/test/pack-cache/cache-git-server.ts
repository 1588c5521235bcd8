/**
 * A git smart-HTTP server for one repository that answers upload-pack requests the way the
 * sidecar does with its pack cache (`uploadPackWithCache` for side-band clients, plain
 * upload-pack for others): real clients, real upload-pack, no sidecar around it.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { silentLogger } from '../../../core/log.ts';
import type { GitRunner } from '../../src/git/git-runner.ts';
import { parseUploadPackHead, pktLine, readsSidebandPacks } from '../../src/http/pkt-line.ts';
import type { PackCache, PackCacheObserver } from '../../src/pack-cache/pack-cache.ts';
import { uploadPackWithCache } from '../../src/pack-cache/upload-pack-with-cache.ts';

export interface CacheGitServer {
  /** Clone URL of the repository. */
  url: string;
  close(): Promise<void>;
}

export interface CacheGitServerOptions {
  repoDir: string;
  cache: PackCache;
  git: GitRunner;
  keepaliveMs?: number;
  maxStdinBytes?: number;
}

export async function startCacheGitServer(options: CacheGitServerOptions): Promise<CacheGitServer> {
  const server = createServer((req, res) => {
    handle(options, req, res).catch(() => res.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/repo.git`, close: () => closeServer(server) };
}

async function handle(
  options: CacheGitServerOptions,
  req: IncomingMessage,
  res: import('node:http').ServerResponse,
) {
  const protocol = req.headers['git-protocol'] as string | undefined;
  const env: Record<string, string> = protocol ? { GIT_PROTOCOL: protocol } : {};
  if (req.method === 'GET' && req.url === '/repo.git/info/refs?service=git-upload-pack') {
    res.writeHead(200, { 'Content-Type': 'application/x-git-upload-pack-advertisement' });
    if (!protocol?.includes('version=2')) res.write(`${pktLine('# service=git-upload-pack\n')}0000`);
    const proc = options.git.spawn({
      args: ['upload-pack', '--stateless-rpc', '--advertise-refs', options.repoDir],
      timeoutMs: 60_000,
      env,
    });
    proc.stdin.end();
    proc.stdout.pipe(res);
    await proc.done;
    return;
  }
  if (req.method !== 'POST' || req.url !== '/repo.git/git-upload-pack') {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
  res.writeHead(200, { 'Content-Type': 'application/x-git-upload-pack-result' });
  if (readsSidebandPacks(parseUploadPackHead(body), protocol)) {
    await uploadPackWithCache({
      git: options.git,
      cache: options.cache,
      logger: silentLogger(),
      repo: { id: 'example.com/org/repo', dir: options.repoDir },
      body: Readable.from([body]),
      protocol,
      out: res,
      timeoutMs: 60_000,
      keepaliveMs: options.keepaliveMs,
      maxStdinBytes: options.maxStdinBytes,
      started: (proc) => res.on('close', () => proc.kill()),
    });
    res.end();
    return;
  }
  const proc = options.git.spawn({
    args: ['upload-pack', '--stateless-rpc', options.repoDir],
    timeoutMs: 60_000,
    env,
    stdin: body,
  });
  proc.stdout.pipe(res);
  await proc.done;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** An observer that records what the cache did, in order. */
export function recordingObserver(): PackCacheObserver & { lookups: string[]; generations: string[] } {
  const lookups: string[] = [];
  const generations: string[] = [];
  return {
    lookups,
    generations,
    lookup: (result) => lookups.push(result),
    generation: (outcome) => generations.push(outcome),
    served() {},
    evicted() {},
  };
}
