/**
 * Errors of the shared contract. `ContractError` is what core's parsers throw when input breaks
 * a rule both programs apply (a repository id, a duration); each program turns it into its own
 * error with its own context (the sidecar into a 400 or CONFIG_INVALID, the operator into
 * SPEC_INVALID or CONFIG_INVALID). Messages quote at most a short prefix of the input and never
 * hold credentials.
 */
export type ContractErrorCode = 'BAD_REPO_PATH' | 'BAD_DURATION';

export class ContractError extends Error {
  readonly code: ContractErrorCode;

  constructor(code: ContractErrorCode, message: string) {
    super(message);
    this.name = 'ContractError';
    this.code = code;
  }
}

export function isContractError(err: unknown, code?: ContractErrorCode): err is ContractError {
  return err instanceof ContractError && (code === undefined || err.code === code);
}

/**
 * Every `error.code` a sidecar may answer with (`{"error":{"code","message"}}`, on the admin API
 * and the git port alike). A closed list: the sidecar cannot raise a code that is not here, and
 * the operator's client can tell a known code from one a newer sidecar invented.
 */
export const WIRE_ERROR_CODES = [
  'BAD_REPO_PATH',
  'HOST_NOT_ALLOWED',
  'BAD_REQUEST',
  'PAYLOAD_TOO_LARGE',
  'UNAUTHORIZED',
  'NOT_FOUND',
  'CONFLICT',
  'CONFIG_INVALID',
  'GIT_FAILED',
  'GIT_TIMEOUT',
  'PROCESS_FAILED',
  'PROCESS_TIMEOUT',
  'UPSTREAM_FAILED',
  'MIRROR_NOT_READY',
  'FETCH_FAILED',
  /**
   * No upstream credentials that last long enough for the git command: the ones held expire
   * before its requests could all have gone out, or minting a GitHub App token failed. Nothing
   * was sent upstream; new credentials (the operator's next PUT, the next mint) cure it.
   */
  'CREDENTIALS_UNAVAILABLE',
  'SHUTTING_DOWN',
  'SNAPSHOT_NOT_FOUND',
  'SNAPSHOT_CORRUPT',
  'SNAPSHOT_UNSAFE_ENTRY',
  'SNAPSHOT_STORE_FAILED',
  'SNAPSHOT_SKIPPED',
  'RESTORE_FAILED',
  'SANITY_CHECK_FAILED',
  'LFS_OBJECT_CORRUPT',
  'LFS_TOKEN_INVALID',
  /** A write would not fit the data budget (or the disk) even after eviction; the message names the sizes. */
  'INSUFFICIENT_STORAGE',
  /** Upstream asked us to wait (429/503 with Retry-After); the answer carries Retry-After. */
  'UPSTREAM_THROTTLED',
  /** This client has too many requests in flight; the answer carries Retry-After. */
  'TOO_MANY_REQUESTS',
  'ABORTED',
  /** Anything the sidecar did not raise on purpose; the detail is only in its log. */
  'INTERNAL',
] as const;

export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];

const WIRE_CODES: ReadonlySet<string> = new Set(WIRE_ERROR_CODES);

export function isWireErrorCode(value: unknown): value is WireErrorCode {
  return typeof value === 'string' && WIRE_CODES.has(value);
}
