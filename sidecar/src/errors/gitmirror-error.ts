import { ContractError, type WireErrorCode } from '../../../core/errors.ts';

/**
 * Every error the sidecar raises on purpose carries a stable `code` so callers, logs, metrics
 * and the admin API can branch on it without parsing messages. The codes are the wire codes of
 * the contract (core/errors.ts), all but INTERNAL, which only the error handler answers with.
 * Messages never include credentials: callers pass redacted URLs (see `redactUrl`).
 */
export type ErrorCode = Exclude<WireErrorCode, 'INTERNAL'>;

export class GitMirrorError extends Error {
  readonly code: ErrorCode;
  /** HTTP status to answer with when this error reaches a client. */
  readonly status: number;
  /** When the caller must wait before trying again (a throttled upstream, a busy client): `Retry-After`. */
  readonly retryAfterMs?: number;

  constructor(
    code: ErrorCode,
    message: string,
    options: { status?: number; cause?: unknown; retryAfterMs?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GitMirrorError';
    this.code = code;
    this.status = options.status ?? defaultStatus(code);
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

function defaultStatus(code: ErrorCode): number {
  switch (code) {
    case 'BAD_REPO_PATH':
    case 'BAD_REQUEST':
    case 'CONFIG_INVALID':
      return 400;
    case 'UNAUTHORIZED':
      return 401;
    case 'HOST_NOT_ALLOWED':
    case 'LFS_TOKEN_INVALID':
      return 403;
    case 'NOT_FOUND':
    case 'SNAPSHOT_NOT_FOUND':
      return 404;
    case 'CONFLICT':
      return 409;
    case 'PAYLOAD_TOO_LARGE':
      return 413;
    case 'TOO_MANY_REQUESTS':
      return 429;
    case 'UPSTREAM_FAILED':
    case 'LFS_OBJECT_CORRUPT':
      return 502;
    case 'MIRROR_NOT_READY':
    case 'SHUTTING_DOWN':
    case 'CREDENTIALS_UNAVAILABLE':
    case 'UPSTREAM_THROTTLED':
      return 503;
    case 'INSUFFICIENT_STORAGE':
      return 507;
    default:
      return 500;
  }
}

export function isGitMirrorError(err: unknown, code?: ErrorCode): err is GitMirrorError {
  return err instanceof GitMirrorError && (code === undefined || err.code === code);
}

/**
 * A contract error from core as the sidecar's own: a bad repository id keeps its code (a 400
 * to a client), a bad duration is bad configuration.
 */
export function fromContractError(err: ContractError): GitMirrorError {
  const code = err.code === 'BAD_REPO_PATH' ? 'BAD_REPO_PATH' : 'CONFIG_INVALID';
  return new GitMirrorError(code, err.message, { cause: err });
}

/** A short, credential-free description of any thrown value, for logs and status fields. */
export function describeError(err: unknown): string {
  if (err instanceof GitMirrorError || err instanceof ContractError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Drops userinfo from a URL so it can be logged or put in an error message. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
    }
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}
