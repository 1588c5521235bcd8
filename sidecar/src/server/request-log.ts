import type { Request, Response } from 'express';
import type { Logger } from '../../../core/log.ts';
import { newRequestContext, type RequestContext } from '../http/request-context.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';

/**
 * Runs each git request's handler with a fresh context and, once the request is over (the
 * response closed and the handler done, in either order), writes one JSON line and the
 * request and byte counters from that context. Headers are never logged: the Authorization
 * header a client sends to reach a private upstream stays out.
 */
export function requestLog(logger: Logger, metrics: SidecarMetrics) {
  return async (req: Request, res: Response, handle: (ctx: RequestContext) => Promise<void>) => {
    const ctx = newRequestContext();
    const closed = new Promise<void>((resolve) => res.on('close', resolve));
    try {
      await handle(ctx);
    } finally {
      void closed.then(() => record(ctx, req, res, logger, metrics));
    }
  };
}

function record(ctx: RequestContext, req: Request, res: Response, logger: Logger, metrics: SidecarMetrics) {
  const { route, source, bytes } = ctx;
  const outcome = res.writableFinished ? String(res.statusCode) : 'aborted';
  metrics.requests.inc({ route, outcome: `${source ?? 'none'}_${outcome}` });
  // The byte counter's route labels predate the context: snake case for what the cache served
  // itself, the route as named for what it relayed from upstream. Dashboards depend on them.
  if (bytes) {
    const label = bytes.source === 'upstream' ? route : route.replace('-', '_');
    metrics.bytesServed.inc({ route: label, source: bytes.source }, bytes.count);
  }
  logger.info(
    {
      method: req.method,
      path: req.path.slice(0, 300),
      route,
      mirror: ctx.repo?.id,
      source,
      pack: ctx.pack,
      status: res.statusCode,
      aborted: !res.writableFinished,
      durationMs: Math.round(performance.now() - ctx.startedAt),
    },
    'request',
  );
}
