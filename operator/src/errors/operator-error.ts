/**
 * Every error the operator raises on purpose carries a stable `code`, so reconcilers, metrics
 * and tests branch on it instead of parsing messages. Messages never hold credentials, tokens
 * or Secret data: they end up in logs, Events and status conditions.
 */
export type OperatorErrorCode =
  | 'CONFIG_INVALID'
  | 'KUBE_NOT_FOUND'
  | 'KUBE_CONFLICT'
  | 'KUBE_ALREADY_EXISTS'
  | 'KUBE_FORBIDDEN'
  | 'KUBE_INVALID'
  | 'KUBE_UNAVAILABLE'
  | 'SIDECAR_UNREACHABLE'
  | 'SIDECAR_TIMEOUT'
  | 'SIDECAR_UNAUTHORIZED'
  | 'SIDECAR_NOT_FOUND'
  | 'SIDECAR_REJECTED'
  | 'SIDECAR_FAILED'
  | 'SIDECAR_BAD_RESPONSE'
  | 'CREDENTIALS_NOT_FOUND'
  | 'CREDENTIALS_INVALID'
  | 'SPEC_INVALID'
  | 'WRITER_HANDOVER_BLOCKED'
  | 'LEADER_LOST';

export class OperatorError extends Error {
  readonly code: OperatorErrorCode;
  /** HTTP status of the failed call, when one was answered. */
  readonly status: number | undefined;
  /** The remote side's own error code (the sidecar's `error.code`, the API server's `reason`). */
  readonly remoteCode: string | undefined;

  constructor(
    code: OperatorErrorCode,
    message: string,
    options: { status?: number; remoteCode?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OperatorError';
    this.code = code;
    this.status = options.status;
    this.remoteCode = options.remoteCode;
  }
}

export function isOperatorError(err: unknown, code?: OperatorErrorCode): err is OperatorError {
  return err instanceof OperatorError && (code === undefined || err.code === code);
}

/** A short, credential-free description of any thrown value, for logs, Events and conditions. */
export function describeError(err: unknown): string {
  if (err instanceof OperatorError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
