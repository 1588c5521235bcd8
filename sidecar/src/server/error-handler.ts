import type { NextFunction, Request, Response } from 'express';
import type { ErrorBody } from '../../../core/admin-api.ts';
import { isContractError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/log.ts';
import { fromContractError, GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * Turns thrown errors into `{error: {code, message}}` with the error's HTTP status. Errors
 * we did not raise on purpose become a 500 with a generic message; the detail goes to the log.
 */
export function errorHandler(logger: Logger) {
  return (err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const known =
      err instanceof GitMirrorError
        ? err
        : isContractError(err)
          ? fromContractError(err)
          : bodyParserError(err);
    if (!known) logger.error({ err }, 'unhandled error');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = known?.status ?? 500;
    if (known?.retryAfterMs !== undefined) res.setHeader('retry-after', Math.ceil(known.retryAfterMs / 1000));
    res.status(status).json({
      error: { code: known?.code ?? 'INTERNAL', message: known?.message ?? 'internal error' },
    } satisfies ErrorBody);
  };
}

/** express.json() raises plain errors with a `status` and `type`; keep their 4xx. */
function bodyParserError(err: unknown): GitMirrorError | undefined {
  const e = err as { status?: number; type?: string; message?: string };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && typeof e.type === 'string') {
    const code = e.status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
    return new GitMirrorError(
      code,
      e.type === 'entity.parse.failed' ? 'body is not valid JSON' : (e.message ?? e.type),
      {
        status: e.status,
      },
    );
  }
  return undefined;
}
