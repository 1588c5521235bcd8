import type { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import type { Logger } from '../../../core/log.ts';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import { pktLine } from './pkt-line.ts';
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

export async function serveLocalUploadPack(deps: LocalServeDeps, serve: LocalServe, body: Readable) {
  const { req, res } = serve;
  res.status(200);
  res.set({ 'Content-Type': 'application/x-git-upload-pack-result', 'Cache-Control': 'no-cache' });
  await runUploadPack(deps, serve, { args: [], protocol: gitProtocol(req), body });
}

async function runUploadPack(
  deps: LocalServeDeps,
  { mirror, res, ctx }: LocalServe,
  run: { args: string[]; protocol?: string; body?: Readable },
): Promise<void> {
  const started = performance.now();
  mirror.serveStarted();
  const proc = deps.git.spawn({
    args: ['upload-pack', '--stateless-rpc', ...run.args, mirror.dir],
    timeoutMs: deps.timeoutMs,
    env: run.protocol ? { GIT_PROTOCOL: run.protocol } : {},
    stdin: run.body,
  });
  if (!run.body) proc.stdin.end();
  const count = countBytes(ctx, 'local');
  proc.stdout.on('data', (chunk: Buffer) => count(chunk.length));
  // A client that hangs up must not leave upload-pack computing a pack for no one.
  res.on('close', () => {
    if (!res.writableFinished) proc.kill();
  });
  proc.stdout.pipe(res);
  try {
    await proc.done;
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
