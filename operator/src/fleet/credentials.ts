import { rfc3339 } from '../../../core/clock.ts';
import { type Credentials, TOKEN_USERNAME } from '../../../core/credentials.ts';
import { type GitHubApp, hasGitHubApp, parseGitHubApp } from '../../../github/src/app.ts';
import { type GitHubError, isGitHubError } from '../../../github/src/errors.ts';
import type { InstallationTokens } from '../../../github/src/token-cache.ts';
import type { GitMirror } from '../api/gitmirror.ts';
import { OperatorError, type OperatorErrorCode } from '../errors/operator-error.ts';
import type { KubeApi } from '../kube/api.ts';

/**
 * An installation token is handed to the fleet only while it has at least this long left. The
 * refresh policy (`github/src/token-cache.ts`) replaces tokens half an hour before they expire;
 * this floor matters only while minting fails, when the token in hand is still worth handing to
 * a new pod for as long as it works.
 */
const MIN_HANDOUT_VALIDITY_MS = 10_000;

/** The credentials for a GitMirror's fleet, and what status says about where they came from. */
export interface ResolvedCredentials {
  credentials: Credentials;
  /** Set when the Secret holds a GitHub App: the token handed out and its refresh. */
  githubApp?: AppTokenReport;
}

export interface AppTokenReport {
  /** When the token handed out expires (our clock). */
  expiresAt: number;
  lastMintAt?: number;
  /** When to look again: the token's refresh time, or the end of the backoff after a failed mint. */
  nextAt?: number;
  /** Why the last mint failed, while the token in hand still lasts. */
  refreshError?: OperatorError;
}

export interface CredentialDeps {
  api: Pick<KubeApi, 'readSecret'>;
  /** One cache for the whole operator: every GitMirror of an installation shares its token. */
  githubTokens: InstallationTokens;
}

/**
 * The upstream credentials a GitMirror names, read fresh on every reconcile (Secrets are not
 * watched: the operator may not list Secrets). A Secret with a GitHub App yields an installation
 * token, minted once per installation for all its GitMirrors and replaced ahead of expiry.
 * Errors name the Secret and the keys, never a value; GitHub's refusals keep GitHub's message.
 */
export async function readCredentials(
  deps: CredentialDeps,
  gm: GitMirror,
): Promise<ResolvedCredentials | undefined> {
  const ref = gm.spec.credentialsSecretRef;
  if (!ref) return undefined;
  const namespace = gm.metadata.namespace ?? '';
  const where = `secret ${namespace}/${ref.name}`;
  const data = await deps.api.readSecret(namespace, ref.name);
  if (!data) throw new OperatorError('CREDENTIALS_NOT_FOUND', `${where} does not exist`);
  if (hasGitHubApp(data)) return appToken(deps.githubTokens, parseApp(data, where));
  const password = data.password || data.token;
  if (!password) {
    throw new OperatorError(
      'CREDENTIALS_INVALID',
      `${where} has neither a "password" nor a "token" key, nor a GitHub App (githubAppID, githubAppInstallationID, githubAppPrivateKey)`,
    );
  }
  return { credentials: data.username ? { username: data.username, password } : { password } };
}

function parseApp(data: Record<string, string>, where: string): GitHubApp {
  try {
    return parseGitHubApp(data, where);
  } catch (err) {
    if (isGitHubError(err)) throw new OperatorError('CREDENTIALS_INVALID', err.message);
    throw err;
  }
}

async function appToken(tokens: InstallationTokens, app: GitHubApp): Promise<ResolvedCredentials> {
  let token: Awaited<ReturnType<InstallationTokens['get']>>;
  try {
    token = await tokens.get(app, { minValidityMs: MIN_HANDOUT_VALIDITY_MS });
  } catch (err) {
    throw isGitHubError(err) ? gitHubFailure(err) : err;
  }
  const state = tokens.state(app);
  return {
    credentials: { username: TOKEN_USERNAME, password: token.token, expiresAt: rfc3339(token.expiresAt) },
    githubApp: {
      expiresAt: token.expiresAt,
      lastMintAt: state?.lastMintAt,
      nextAt: tokens.nextRefreshAt(app),
      refreshError: state?.lastError && gitHubFailure(state.lastError),
    },
  };
}

/**
 * GitHub's refusals only a person can fix stall the GitMirror, each with its own condition
 * reason (see operator-error.ts); an unreachable or rate-limiting GitHub is retried.
 */
const GITHUB_CODES: Record<GitHubError['code'], OperatorErrorCode> = {
  GITHUB_APP_INVALID: 'CREDENTIALS_INVALID',
  GITHUB_APP_UNAUTHORIZED: 'GITHUB_APP_UNAUTHORIZED',
  GITHUB_APP_INSTALLATION_NOT_FOUND: 'GITHUB_INSTALLATION_NOT_FOUND',
  GITHUB_APP_INSTALLATION_SUSPENDED: 'GITHUB_INSTALLATION_SUSPENDED',
  GITHUB_APP_FORBIDDEN: 'GITHUB_APP_FORBIDDEN',
  GITHUB_APP_PERMISSIONS: 'GITHUB_APP_FORBIDDEN',
  GITHUB_API_RATE_LIMITED: 'GITHUB_UNAVAILABLE',
  GITHUB_API_UNAVAILABLE: 'GITHUB_UNAVAILABLE',
};

function gitHubFailure(err: GitHubError): OperatorError {
  return new OperatorError(GITHUB_CODES[err.code], err.message, {
    status: err.status,
    remoteCode: err.code,
    cause: err,
  });
}

/** Codes that mean the credentials could not be had: they set CredentialsReady False. */
const CREDENTIAL_CODES: ReadonlySet<OperatorErrorCode> = new Set([
  'CREDENTIALS_NOT_FOUND',
  'CREDENTIALS_INVALID',
  ...Object.values(GITHUB_CODES),
]);

export function isCredentialsError(err: unknown): err is OperatorError {
  return err instanceof OperatorError && CREDENTIAL_CODES.has(err.code);
}
