/**
 * Every error the operator raises on purpose carries a stable `code`, so reconcilers, metrics
 * and tests branch on it instead of parsing messages, and a `kind`: what the controller must do
 * about it. Messages never hold credentials, tokens or Secret data: they end up in logs, Events
 * and status conditions.
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
  /** GitHub rejected the App's JWT: the key is not the App's, or the App id is wrong. */
  | 'GITHUB_APP_UNAUTHORIZED'
  /** No such installation of the App: a wrong installation id, or the App was uninstalled. */
  | 'GITHUB_INSTALLATION_NOT_FOUND'
  /** The installation is suspended: GitHub hands out no token. */
  | 'GITHUB_INSTALLATION_SUSPENDED'
  /** GitHub refused a token for another reason, e.g. the App lacks Contents: read. */
  | 'GITHUB_APP_FORBIDDEN'
  /** GitHub's API did not answer, failed or rate-limits token requests. */
  | 'GITHUB_UNAVAILABLE'
  | 'SPEC_INVALID'
  | 'WRITER_HANDOVER_BLOCKED'
  | 'LEADER_LOST';

/**
 * What the controller does about an error (fluxcd/source-controller's Stalling, Waiting and
 * Generic errors, handled in one place: `runtime/controller.ts`).
 */
export type ErrorKind =
  /**
   * Retrying cannot help; only a change by a person can (the spec, or the Secret it names). Not
   * retried with backoff: the object is looked at again when it changes.
   */
  | 'stalled'
  /**
   * Not a failure: something else has to happen first. Looked at again after `requeueAfterMs`,
   * with no backoff and no error log.
   */
  | 'waiting'
  /** Anything else: retried with backoff. */
  | 'transient';

/** The kind of every code that is not transient: this table is the one place that says so. */
const KINDS: Partial<Record<OperatorErrorCode, ErrorKind>> = {
  CREDENTIALS_NOT_FOUND: 'stalled',
  CREDENTIALS_INVALID: 'stalled',
  GITHUB_APP_UNAUTHORIZED: 'stalled',
  GITHUB_INSTALLATION_NOT_FOUND: 'stalled',
  GITHUB_INSTALLATION_SUSPENDED: 'stalled',
  GITHUB_APP_FORBIDDEN: 'stalled',
  SPEC_INVALID: 'stalled',
  WRITER_HANDOVER_BLOCKED: 'waiting',
};

/** The condition reason a stalled GitMirror shows for each stalling code. */
const STALLED_REASONS: Partial<Record<OperatorErrorCode, string>> = {
  CREDENTIALS_NOT_FOUND: 'CredentialsNotFound',
  CREDENTIALS_INVALID: 'CredentialsInvalid',
  GITHUB_APP_UNAUTHORIZED: 'GitHubAppUnauthorized',
  GITHUB_INSTALLATION_NOT_FOUND: 'GitHubInstallationNotFound',
  GITHUB_INSTALLATION_SUSPENDED: 'GitHubInstallationSuspended',
  GITHUB_APP_FORBIDDEN: 'GitHubAppForbidden',
  SPEC_INVALID: 'InvalidSpec',
};

export interface OperatorErrorOptions {
  /** HTTP status of the failed call, when one was answered. */
  status?: number;
  /** The remote side's own error code (the sidecar's `error.code`, the API server's `reason`). */
  remoteCode?: string;
  /** Required for a waiting code: when to look again. */
  requeueAfterMs?: number;
  cause?: unknown;
}

export class OperatorError extends Error {
  readonly code: OperatorErrorCode;
  readonly kind: ErrorKind;
  readonly status: number | undefined;
  readonly remoteCode: string | undefined;
  /** For a waiting error: how long until the controller looks again. */
  readonly requeueAfterMs: number | undefined;

  constructor(code: OperatorErrorCode, message: string, options: OperatorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OperatorError';
    this.code = code;
    this.kind = KINDS[code] ?? 'transient';
    this.status = options.status;
    this.remoteCode = options.remoteCode;
    this.requeueAfterMs = options.requeueAfterMs;
    if (this.kind === 'waiting' && this.requeueAfterMs === undefined)
      throw new TypeError(`${code} is a waiting error and needs requeueAfterMs`);
  }

  /** The condition reason a stalled object shows; undefined for the other kinds. */
  get stalledReason(): string | undefined {
    return this.kind === 'stalled' ? (STALLED_REASONS[this.code] ?? 'Stalled') : undefined;
  }
}

/** The kind of any thrown value: what the operator did not raise on purpose is transient. */
export function errorKind(err: unknown): ErrorKind {
  return err instanceof OperatorError ? err.kind : 'transient';
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
