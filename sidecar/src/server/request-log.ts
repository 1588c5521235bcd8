import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../../../core/log.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';

/**
 * One JSON line per request once it is over, and the request counter. Headers are never
 * logged: the Authorization header a client sends to reach a private upstream stays out.
 */
export function requestLog(logger: Logger, metrics: SidecarMetrics) {
  return (req: Request, res: Response, next: NextFunction) => {
    const started = performance.now();
    res.on('close', () => {
      const route = (res.locals.route as string | undefined) ?? 'other';
      const outcome = res.writableFinished ? String(res.statusCode) : 'aborted';
      metrics.requests.inc({ route, outcome: `${res.locals.source ?? 'none'}_${outcome}` });
      logger.info(
        {
          method: req.method,
          path: req.path.slice(0, 300),
          route,
          mirror: res.locals.mirror,
          source: res.locals.source,
          status: res.statusCode,
          aborted: !res.writableFinished,
          durationMs: Math.round(performance.now() - started),
        },
        'request',
      );
    });
    next();
  };
}
