/**
 * Errors of the GitHub integration. Each carries a stable code and says what the caller must
 * do: `needsPerson` errors (a wrong key, installation id or permission, a suspended
 * installation) do not heal by retrying soon; the others (GitHub unreachable, rate limited)
 * do. Messages quote GitHub's own `message` so a person can act on it, and never hold the
 * private key, a JWT or a token (`scrubSecrets` removes anything shaped like one).
 */
export type GitHubErrorCode =
  /** The App's settings in the Secret are missing or malformed (checked before any call). */
  | 'GITHUB_APP_INVALID'
  /** GitHub rejected the JWT: key and App id do not belong together, or the clock is far off. */
  | 'GITHUB_APP_UNAUTHORIZED'
  /** No such installation of this App: a wrong id, or the App was uninstalled. */
  | 'GITHUB_APP_INSTALLATION_NOT_FOUND'
  /** The installation exists but is suspended: GitHub refuses every token. */
  | 'GITHUB_APP_INSTALLATION_SUSPENDED'
  /** GitHub refused the request for another reason (403 that is not a rate limit). */
  | 'GITHUB_APP_FORBIDDEN'
  /** The installation lacks a permission the token asks for (contents: read). */
  | 'GITHUB_APP_PERMISSIONS'
  | 'GITHUB_API_RATE_LIMITED'
  /** Network error, timeout, 5xx or an answer that is not what GitHub documents. */
  | 'GITHUB_API_UNAVAILABLE';

const NEEDS_PERSON: ReadonlySet<GitHubErrorCode> = new Set([
  'GITHUB_APP_INVALID',
  'GITHUB_APP_UNAUTHORIZED',
  'GITHUB_APP_INSTALLATION_NOT_FOUND',
  'GITHUB_APP_INSTALLATION_SUSPENDED',
  'GITHUB_APP_FORBIDDEN',
  'GITHUB_APP_PERMISSIONS',
]);

export class GitHubError extends Error {
  readonly code: GitHubErrorCode;
  /** HTTP status GitHub answered with, when it answered. */
  readonly status: number | undefined;
  /** GitHub's own `message`, scrubbed; also part of `message`. */
  readonly githubMessage: string | undefined;
  /** How long GitHub asked us to wait (Retry-After, X-RateLimit-Reset). */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: GitHubErrorCode,
    message: string,
    options: { status?: number; githubMessage?: string; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = 'GitHubError';
    this.code = code;
    this.status = options.status;
    this.githubMessage = options.githubMessage;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** Only a person fixes this (Secret, App settings, installation); retrying soon will not. */
  get needsPerson(): boolean {
    return NEEDS_PERSON.has(this.code);
  }
}

export function isGitHubError(err: unknown, code?: GitHubErrorCode): err is GitHubError {
  return err instanceof GitHubError && (code === undefined || err.code === code);
}

/**
 * Removes anything that could be a credential from text that came from outside (an error
 * body, a library's message): JWTs, GitHub tokens of every prefix, PEM blocks, and any of the
 * given exact values; then caps the length. A server that echoes our Authorization header
 * back cannot make us log it.
 */
export function scrubSecrets(text: string, known: readonly string[] = [], maxLength = 300): string {
  let out = text;
  for (const value of known) if (value.length >= 8) out = out.split(value).join('[redacted]');
  out = out
    .replace(/-----BEGIN [^-]*-----[\s\S]*?(-----END [^-]*-----|$)/g, '[redacted]')
    .replace(/eyJ[\w-]*\.[\w-]*\.?[\w-]*/g, '[redacted]')
    .replace(/\bgh[pousr]_[\w.-]+/g, '[redacted]')
    .replace(/\bgithub_pat_\w+/g, '[redacted]')
    .replace(/\p{Cc}+/gu, ' ')
    .trim();
  return out.length > maxLength ? `${out.slice(0, maxLength)}…` : out;
}
