import type { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import type { Logger } from '../../../core/log.ts';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import type { PackCache } from '../pack-cache/pack-cache.ts';
import { uploadPackWithCache } from '../pack-cache/upload-pack-with-cache.ts';
import { pktLine, readsSidebandPacks, type UploadPackRequestHead } from './pkt-line.ts';
import { countBytes, type RequestContext } from './request-context.ts';

/**
 * Serving from the local mirror runs `git upload-pack --stateless-rpc` directly rather than
 * through `git http-backend`: http-backend would only spawn the same upload-pack behind a
 * CGI layer whose response headers we would have to parse back out. Going direct, the
 * sidecar owns status codes and headers, streams stdin and stdout without buffering, and
 * passes the client's protocol version in GIT_PROTOCOL (sanitised) exactly as
 * http-backend does.
 */
export interface LocalServeDeps {
  git: GitRunner;
  logger: Logger;
  metrics: SidecarMetrics;
  /** Upper bound for one upload-pack; a clone of a huge repo over a slow link can take long. */
  timeoutMs: number;
  /** Identical pack-objects runs share one generation; absent when the cache is off. */
  packCache?: PackCache;
}

const PROTOCOL_HEADER = /^[A-Za-z0-9=:._-]{1,256}$/;

/** The client's Git-Protocol header if it is well-formed; anything else is dropped (v0). */
export function gitProtocol(req: Request): string | undefined {
  const value = req.get('git-protocol');
  return value && PROTOCOL_HEADER.test(value) ? value : undefined;
}

function isV2(protocol: string | undefined): boolean {
  return protocol?.split(':').includes('version=2') ?? false;
}

/** One request served from a local mirror. */
export interface LocalServe {
  mirror: Mirror;
  req: Request;
  res: Response;
  ctx: RequestContext;
}

export async function serveLocalInfoRefs(deps: LocalServeDeps, serve: LocalServe): Promise<void> {
  const { req, res } = serve;
  const protocol = gitProtocol(req);
  res.status(200);
  res.set({
    'Content-Type': 'application/x-git-upload-pack-advertisement',
    'Cache-Control': 'no-cache, max-age=0, must-revalidate',
  });
  // v0/v1 clients expect the smart-HTTP banner; v2 capability advertisements start bare.
  if (!isV2(protocol)) res.write(`${pktLine('# service=git-upload-pack\n')}0000`);
  await runUploadPack(deps, serve, { args: ['--advertise-refs'], protocol });
}

/** An upload-pack request: its body, and its head as read to find the wants. */
export interface UploadPackBody {
  body: Readable;
  head: UploadPackRequestHead;
}

export async function serveLocalUploadPack(deps: LocalServeDeps, serve: LocalServe, request: UploadPackBody) {
  const { req, res } = serve;
  res.status(200);
  res.set({ 'Content-Type': 'application/x-git-upload-pack-result', 'Cache-Control': 'no-cache' });
  const protocol = gitProtocol(req);
  const cache = deps.packCache;
  if (cache && asksForPack(request.head, protocol)) {
    if (readsSidebandPacks(request.head, protocol))
      return runUploadPack(deps, serve, { args: [], protocol, body: request.body, cache });
    cache.noteBypass('no_sideband');
    serve.ctx.pack = 'bypass';
  }
  await runUploadPack(deps, serve, { args: [], protocol, body: request.body });
}

/** A request that may end in a pack: a v2 `fetch`, or a v0/v1 request with wants. */
function asksForPack(head: UploadPackRequestHead, protocol: string | undefined): boolean {
  return isV2(protocol) ? head.command === 'fetch' : head.wants.length > 0;
}

interface UploadPackRun {
  args: string[];
  protocol?: string;
  body?: Readable;
  /**
   * With the pack cache in pack-objects' place (pack-cache/upload-pack-with-cache.ts):
   * identical requests share one generation, and the pack goes from the cache's file
   * straight into the response. Only for a request with a body and a sideband client.
   */
  cache?: PackCache;
}

/**
 * One upload-pack for one response. A failure after the status line cuts the response
 * off, so the client reports a failed fetch rather than taking part of a pack for the whole.
 */
async function runUploadPack(deps: LocalServeDeps, serve: LocalServe, run: UploadPackRun): Promise<void> {
  const { mirror, res, ctx } = serve;
  const started = performance.now();
  mirror.serveStarted();
  const written = countBytes(ctx, 'local');
  // A client that hangs up must not leave upload-pack computing a pack for no one.
  const stopWhenClientLeaves = (proc: { kill(): void }) =>
    res.on('close', () => {
      if (!res.writableFinished) proc.kill();
    });
  try {
    if (run.cache && run.body) {
      const { pack } = await uploadPackWithCache({
        git: deps.git,
        cache: run.cache,
        logger: deps.logger,
        repo: { id: mirror.id, dir: mirror.dir },
        body: run.body,
        protocol: run.protocol,
        out: res,
        timeoutMs: deps.timeoutMs,
        started: stopWhenClientLeaves,
        written,
      });
      ctx.pack = pack;
      res.end();
    } else {
      const proc = deps.git.spawn({
        args: ['upload-pack', '--stateless-rpc', ...run.args, mirror.dir],
        timeoutMs: deps.timeoutMs,
        env: run.protocol ? { GIT_PROTOCOL: run.protocol } : {},
        stdin: run.body,
      });
      if (!run.body) proc.stdin.end();
      stopWhenClientLeaves(proc);
      proc.stdout.on('data', (chunk: Buffer) => written(chunk.length));
      proc.stdout.pipe(res);
      await proc.done;
    }
  } catch (err) {
    const route = ctx.route.replace('-', '_');
    deps.logger.warn({ mirror: mirror.id, route, err: describeError(err) }, 'upload-pack failed');
    res.destroy();
  } finally {
    mirror.serveFinished();
    if (ctx.route === 'upload-pack')
      deps.metrics.uploadPackDuration.observe({ source: 'local' }, (performance.now() - started) / 1000);
  }
}
