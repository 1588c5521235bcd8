import type { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import type { Logger } from '../../../core/log.ts';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import { pktLine } from './pkt-line.ts';

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

export async function serveLocalInfoRefs(deps: LocalServeDeps, mirror: Mirror, req: Request, res: Response) {
  const protocol = gitProtocol(req);
  res.status(200);
  res.set({
    'Content-Type': 'application/x-git-upload-pack-advertisement',
    'Cache-Control': 'no-cache, max-age=0, must-revalidate',
  });
  // v0/v1 clients expect the smart-HTTP banner; v2 capability advertisements start bare.
  if (!isV2(protocol)) res.write(`${pktLine('# service=git-upload-pack\n')}0000`);
  await runUploadPack(deps, mirror, res, ['--advertise-refs'], protocol, undefined, 'info_refs');
}

export async function serveLocalUploadPack(
  deps: LocalServeDeps,
  mirror: Mirror,
  req: Request,
  res: Response,
  body: Readable,
): Promise<void> {
  res.status(200);
  res.set({ 'Content-Type': 'application/x-git-upload-pack-result', 'Cache-Control': 'no-cache' });
  await runUploadPack(deps, mirror, res, [], gitProtocol(req), body, 'upload_pack');
}

async function runUploadPack(
  deps: LocalServeDeps,
  mirror: Mirror,
  res: Response,
  extraArgs: string[],
  protocol: string | undefined,
  body: Readable | undefined,
  route: string,
): Promise<void> {
  const started = performance.now();
  mirror.serveStarted();
  const proc = deps.git.spawn({
    args: ['upload-pack', '--stateless-rpc', ...extraArgs, mirror.dir],
    timeoutMs: deps.timeoutMs,
    env: protocol ? { GIT_PROTOCOL: protocol } : {},
    stdin: body,
  });
  if (!body) proc.stdin.end();
  let bytes = 0;
  proc.stdout.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  // A client that hangs up must not leave upload-pack computing a pack for no one.
  res.on('close', () => {
    if (!res.writableFinished) proc.kill();
  });
  proc.stdout.pipe(res);
  try {
    await proc.done;
  } catch (err) {
    deps.logger.warn({ mirror: mirror.id, route, err: describeError(err) }, 'upload-pack failed');
    res.destroy();
  } finally {
    mirror.serveFinished();
    deps.metrics.bytesServed.inc({ route, source: 'local' }, bytes);
    if (route === 'upload_pack')
      deps.metrics.uploadPackDuration.observe({ source: 'local' }, (performance.now() - started) / 1000);
  }
}
