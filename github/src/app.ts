import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { GitHubError } from './errors.ts';

/** The Secret keys (and standalone file keys) that configure a GitHub App. */
export const GITHUB_APP_KEYS = {
  appId: 'githubAppID',
  installationId: 'githubAppInstallationID',
  privateKey: 'githubAppPrivateKey',
  baseUrl: 'githubAppBaseURL',
} as const;

export const DEFAULT_GITHUB_API_URL = 'https://api.github.com';

/** One installation of a GitHub App: what it takes to mint installation tokens. */
export interface GitHubApp {
  /** The App's id (or client id): the JWT's `iss`. */
  appId: string;
  installationId: string;
  /** Parsed once; the PEM text is not kept. */
  privateKey: KeyObject;
  /** REST API root without a trailing slash: `https://api.github.com`, `https://HOST/api/v3`. */
  baseUrl: string;
}

/** Whether these Secret data configure a GitHub App rather than a username and password. */
export function hasGitHubApp(data: Readonly<Record<string, string | undefined>>): boolean {
  return Object.values(GITHUB_APP_KEYS).some((key) => data[key] !== undefined && data[key] !== '');
}

/**
 * Reads a GitHub App from Secret data. `where` names the source in errors (`secret ns/name`).
 * Errors say which key is wrong and never quote a value; the key is parsed here so a bad PEM
 * is reported before anything is sent to GitHub.
 */
export function parseGitHubApp(data: Readonly<Record<string, string | undefined>>, where: string): GitHubApp {
  const missing = [GITHUB_APP_KEYS.appId, GITHUB_APP_KEYS.installationId, GITHUB_APP_KEYS.privateKey].filter(
    (key) => !data[key]?.trim(),
  );
  if (missing.length > 0) invalid(`${where} configures a GitHub App but lacks ${missing.join(', ')}`);
  const appId = data[GITHUB_APP_KEYS.appId]!.trim();
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(appId)) {
    invalid(`${where}: ${GITHUB_APP_KEYS.appId} must be the App's numeric id (or client id)`);
  }
  const installationId = data[GITHUB_APP_KEYS.installationId]!.trim();
  if (!/^[1-9][0-9]{0,19}$/.test(installationId)) {
    invalid(`${where}: ${GITHUB_APP_KEYS.installationId} must be a number (the installation's id)`);
  }
  return {
    appId,
    installationId,
    privateKey: parsePrivateKey(data[GITHUB_APP_KEYS.privateKey]!, where),
    baseUrl: parseBaseUrl(data[GITHUB_APP_KEYS.baseUrl], where),
  };
}

/**
 * Identity of an installation for caches and metrics: API root, App, installation and a
 * fingerprint of the public key (a rotated key is another identity). Holds nothing secret.
 */
export function appIdentity(app: GitHubApp): string {
  const der = createPublicKey(app.privateKey).export({ type: 'spki', format: 'der' });
  const fingerprint = createHash('sha256').update(der).digest('hex').slice(0, 16);
  return `${app.baseUrl}|${app.appId}|${app.installationId}|${fingerprint}`;
}

/**
 * The host git is served from for this API root: github.com for api.github.com, the same host
 * for GitHub Enterprise Server (`https://HOST/api/v3`). Standalone mode uses it to decide
 * which upstreams the App's tokens are for.
 */
export function gitHostOf(baseUrl: string): string {
  const url = new URL(baseUrl);
  return url.host === 'api.github.com' ? 'github.com' : url.host;
}

function parsePrivateKey(pem: string, where: string): KeyObject {
  // A PEM pasted through an env var or a one-line YAML value often arrives with literal "\n".
  const text = pem.includes('\\n') && !pem.includes('\n') ? pem.replaceAll('\\n', '\n') : pem;
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text.trim(), format: 'pem' });
  } catch {
    // The parser's message may quote the input: never pass it on.
    return invalid(
      `${where}: ${GITHUB_APP_KEYS.privateKey} is not a PEM private key (paste the .pem file GitHub generated, BEGIN and END lines included)`,
    );
  }
  if (key.asymmetricKeyType !== 'rsa') {
    invalid(`${where}: ${GITHUB_APP_KEYS.privateKey} must be an RSA key (GitHub Apps sign JWTs with RS256)`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048)
    invalid(
      `${where}: ${GITHUB_APP_KEYS.privateKey} is a ${bits}-bit RSA key; RS256 needs 2048 bits or more`,
    );
  return key;
}

function parseBaseUrl(value: string | undefined, where: string): string {
  const text = value?.trim() || DEFAULT_GITHUB_API_URL;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return invalid(`${where}: ${GITHUB_APP_KEYS.baseUrl} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    invalid(
      `${where}: ${GITHUB_APP_KEYS.baseUrl} must be an http(s) URL such as https://github.example.com/api/v3`,
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    invalid(
      `${where}: ${GITHUB_APP_KEYS.baseUrl} must be a plain API root, without credentials, query or fragment`,
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function invalid(message: string): never {
  throw new GitHubError('GITHUB_APP_INVALID', message);
}
