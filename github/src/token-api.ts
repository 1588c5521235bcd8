import type { GitHubApp } from './app.ts';
import { GitHubError, type GitHubErrorCode, scrubSecrets } from './errors.ts';
import { signAppJwt } from './jwt.ts';

/** The REST API version this client is written against (sent as `X-GitHub-Api-Version`). */
export const GITHUB_API_VERSION = '2022-11-28';

/**
 * What the cache asks for: read access to repository contents, nothing else. An installation
 * token minted with it cannot push or change settings, whatever the App itself may do.
 */
export const TOKEN_PERMISSIONS = { contents: 'read' } as const;

/** An installation token as the rest of gitmirror holds it. */
export interface InstallationToken {
  token: string;
  /** When it stops working, on our clock (GitHub's `expires_at`, corrected for clock offset). */
  expiresAt: number;
  /** When we received it, on our clock. */
  mintedAt: number;
}

export interface TokenRequestOptions {
  /** Milliseconds since the epoch on this host. */
  now(): number;
  /** GitHub's clock minus ours, as last learned from a `Date` header; 0 when unknown. */
  clockOffsetMs?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface TokenResponse {
  token: InstallationToken;
  /** GitHub's clock minus ours at this response, when it sent a usable `Date` header. */
  clockOffsetMs: number | undefined;
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** A JWT claim error with clocks this far apart is retried once on GitHub's time. */
const SKEW_RETRY_THRESHOLD_MS = 30_000;

/**
 * `POST {baseUrl}/app/installations/{id}/access_tokens` as "Authenticating as a GitHub App
 * installation" documents it: JWT as a Bearer token, `Accept: application/vnd.github+json`,
 * `X-GitHub-Api-Version`, a User-Agent (GitHub refuses requests without one); 201 with `token`
 * and `expires_at`. A 401 about the JWT's time claims while GitHub's `Date` says our clock is
 * off is retried once with GitHub's time, as Octokit does.
 */
export async function requestInstallationToken(
  app: GitHubApp,
  options: TokenRequestOptions,
): Promise<TokenResponse> {
  const first = await attempt(app, options, options.clockOffsetMs ?? 0);
  if (first.kind === 'token') return first.response;
  const offset = first.clockOffsetMs;
  if (
    first.error.code === 'GITHUB_APP_UNAUTHORIZED' &&
    /claim/i.test(first.error.githubMessage ?? '') &&
    offset !== undefined &&
    Math.abs(offset - (options.clockOffsetMs ?? 0)) > SKEW_RETRY_THRESHOLD_MS
  ) {
    const second = await attempt(app, options, offset);
    if (second.kind === 'token') return second.response;
    throw second.error;
  }
  throw first.error;
}

type Attempt =
  | { kind: 'token'; response: TokenResponse }
  | { kind: 'error'; error: GitHubError; clockOffsetMs: number | undefined };

async function attempt(app: GitHubApp, options: TokenRequestOptions, offsetMs: number): Promise<Attempt> {
  const jwt = signAppJwt(app, options.now() + offsetMs);
  const url = `${app.baseUrl}/app/installations/${app.installationId}/access_tokens`;
  let res: Response;
  let text: string;
  try {
    res = await (options.fetch ?? fetch)(url, {
      method: 'POST',
      headers: {
        accept: 'application/vnd.github+json',
        authorization: `Bearer ${jwt}`,
        'content-type': 'application/json',
        'user-agent': 'gitmirror',
        'x-github-api-version': GITHUB_API_VERSION,
      },
      body: JSON.stringify({ permissions: TOKEN_PERMISSIONS }),
      redirect: 'error',
      signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    });
    text = await res.text();
  } catch (err) {
    const reason = scrubSecrets(errorText(err), [jwt]);
    return failure(new GitHubError('GITHUB_API_UNAVAILABLE', `cannot reach ${app.baseUrl}: ${reason}`));
  }
  const receivedAt = options.now();
  const clockOffsetMs = offsetFromDate(res.headers.get('date'), receivedAt);
  if (res.status === 201) {
    const token = parseToken(text, app, receivedAt, clockOffsetMs ?? offsetMs);
    return token instanceof GitHubError
      ? failure(token, clockOffsetMs)
      : { kind: 'token', response: { token, clockOffsetMs } };
  }
  return failure(errorFor(res, text, app, jwt, receivedAt), clockOffsetMs);
}

function failure(error: GitHubError, clockOffsetMs?: number): Attempt {
  return { kind: 'error', error, clockOffsetMs };
}

function parseToken(
  text: string,
  app: GitHubApp,
  receivedAt: number,
  offsetMs: number,
): InstallationToken | GitHubError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const { token, expires_at: expiresAt } = (body ?? {}) as { token?: unknown; expires_at?: unknown };
  // The token goes into a credential helper's output and an HTTP header: printable ASCII only.
  if (typeof token !== 'string' || !/^[\x21-\x7e]{8,4096}$/.test(token)) {
    return new GitHubError('GITHUB_API_UNAVAILABLE', `${app.baseUrl} answered 201 without a usable token`);
  }
  const serverExpiry = typeof expiresAt === 'string' ? Date.parse(expiresAt) : Number.NaN;
  // Date headers have whole seconds: take a second off so rounding never makes us late.
  const expiry = serverExpiry - offsetMs - 1000;
  if (!Number.isFinite(serverExpiry) || expiry <= receivedAt) {
    return new GitHubError('GITHUB_API_UNAVAILABLE', `${app.baseUrl} answered 201 with no future expires_at`);
  }
  return { token, expiresAt: expiry, mintedAt: receivedAt };
}

function errorFor(res: Response, text: string, app: GitHubApp, jwt: string, now: number): GitHubError {
  const githubMessage = messageOf(text, jwt);
  const status = res.status;
  const quoted = githubMessage ? `: ${githubMessage}` : '';
  const installation = `installation ${app.installationId} of App ${app.appId}`;
  const make = (code: GitHubErrorCode, message: string, retryAfterMs?: number) =>
    new GitHubError(code, `${message} (GitHub answered ${status}${quoted})`, {
      status,
      githubMessage,
      retryAfterMs,
    });
  const retryAfterMs = retryAfter(res.headers, now);
  if (
    status === 429 ||
    (status === 403 && (retryAfterMs !== undefined || /rate limit/i.test(githubMessage ?? '')))
  ) {
    return make(
      'GITHUB_API_RATE_LIMITED',
      `GitHub rate-limits token requests for ${installation}`,
      retryAfterMs,
    );
  }
  switch (status) {
    case 401:
      return make(
        'GITHUB_APP_UNAUTHORIZED',
        `GitHub rejected the JWT of App ${app.appId}: check that githubAppID and githubAppPrivateKey belong to the same App and that this host's clock is right`,
      );
    case 403:
      return /suspended/i.test(githubMessage ?? '')
        ? make(
            'GITHUB_APP_INSTALLATION_SUSPENDED',
            `${installation} is suspended; an owner must unsuspend it`,
          )
        : make('GITHUB_APP_FORBIDDEN', `GitHub refused a token for ${installation}`);
    case 404:
      return make(
        'GITHUB_APP_INSTALLATION_NOT_FOUND',
        `GitHub has no ${installation}: check githubAppInstallationID, or whether the App was uninstalled`,
      );
    case 422:
      return make(
        'GITHUB_APP_PERMISSIONS',
        `${installation} cannot grant a token with contents: read; give the App the Contents (read) permission`,
      );
    default:
      return make(
        'GITHUB_API_UNAVAILABLE',
        `GitHub could not mint a token for ${installation}`,
        retryAfterMs,
      );
  }
}

function messageOf(text: string, jwt: string): string | undefined {
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return scrubSecrets(message, [jwt]);
  } catch {
    // Not JSON: a proxy's HTML page, say. Its text says little and may be long.
  }
  return undefined;
}

/** Retry-After (seconds or a date), else X-RateLimit-Reset when nothing remains. */
function retryAfter(headers: Headers, now: number): number | undefined {
  const after = headers.get('retry-after');
  if (after) {
    const seconds = Number(after);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const date = Date.parse(after);
    if (Number.isFinite(date)) return Math.max(0, date - now);
  }
  if (headers.get('x-ratelimit-remaining') === '0') {
    const reset = Number(headers.get('x-ratelimit-reset'));
    if (Number.isFinite(reset) && reset > 0) return Math.max(0, reset * 1000 - now);
  }
  return undefined;
}

function offsetFromDate(date: string | null, localNow: number): number | undefined {
  const server = date ? Date.parse(date) : Number.NaN;
  return Number.isFinite(server) ? server - localNow : undefined;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}
