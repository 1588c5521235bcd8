import { createHash, generateKeyPairSync, type KeyObject, randomBytes, verify } from 'node:crypto';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type GitUpstream, startGitUpstream } from './git-upstream.ts';

/**
 * A local stand-in for the two parts of GitHub a GitHub App mirror touches, since GitHub
 * itself cannot be reached from tests. It checks what GitHub checks and answers as GitHub
 * answers:
 *
 * - `POST {apiUrl}/app/installations/{id}/access_tokens`: the `Authorization: Bearer` JWT must
 *   be RS256, signed by the key of the App its `iss` names, with integer `iat` not in the
 *   future and integer `exp` in the future, at most 10 minutes ahead and at most 10 minutes
 *   after `iat`; a User-Agent is required and `X-GitHub-Api-Version`, when sent, must be a
 *   version GitHub serves. Requested permissions must be granted to the installation.
 *   Errors are GitHub's status codes and `{message, documentation_url, status}` bodies: 401
 *   "A JSON web token could not be decoded" (bad signature, wrong key, unknown App), 401 for
 *   each claim, 404 "Not Found" (wrong or deleted installation), 403 "This installation has
 *   been suspended", 422 for permissions. A token is `ghs_…`, answered 201 with `expires_at`
 *   after a configurable lifetime (GitHub: one hour).
 * - A git upstream (`git http-backend` behind it) at `{gitUrl}/{repo}` that accepts only Basic
 *   auth `<any user>:<token>` with a token it minted that has not expired and whose
 *   installation is neither suspended nor deleted. Every request is recorded with the state
 *   of the token it carried, so a test can assert that no request ever used an expired one.
 */
export interface StandInApp {
  appId: string;
  /** PKCS#1 PEM, as GitHub hands it out. */
  privateKeyPem: string;
}

export type TokenState = 'none' | 'valid' | 'expired' | 'revoked' | 'unknown' | 'malformed';

export interface GitRequestRecord {
  at: number;
  method: string;
  path: string;
  auth: TokenState;
  /** sha256 prefix of the token, so records never hold one. */
  tokenId?: string;
  /** How long the token had left (negative: expired), in ms. */
  remainingMs?: number;
}

export interface ApiRequestRecord {
  at: number;
  path: string;
  status: number;
  message?: string;
  accept?: string;
  apiVersion?: string;
  userAgent?: string;
}

export interface MintRecord {
  at: number;
  /** `api`: through the access_tokens endpoint (an App's JWT); `direct`: `issueToken` for a test client. */
  source: 'api' | 'direct';
  installationId: string;
  tokenId: string;
  expiresAt: number;
}

export interface GitHubStandIn {
  /** The API root to configure as `githubAppBaseURL` (GitHub Enterprise Server's layout). */
  apiUrl: string;
  /** `host:port`, the host part of mirror ids. */
  host: string;
  gitUrl(repo: string): string;
  createApp(): StandInApp;
  /** Installs an App; returns the installation id. Default permissions: contents read, metadata read. */
  install(appId: string, options?: { permissions?: Record<string, 'read' | 'write'> }): string;
  suspend(installationId: string): void;
  /** Uninstalls: the id answers 404 from now on and its tokens stop working, as on GitHub. */
  uninstall(installationId: string): void;
  /** Mints a token directly, for test clients (a CI job with its own token). */
  issueToken(installationId: string): string;
  setTokenLifetime(seconds: number): void;
  /** Shifts the stand-in's clock relative to this host's (clock skew). */
  setClockOffset(ms: number): void;
  apiRequests: ApiRequestRecord[];
  mints: MintRecord[];
  gitRequests: GitRequestRecord[];
  /** Git requests that carried a token after it had expired: must stay empty. */
  expiredTokenUses(): GitRequestRecord[];
  upstream: GitUpstream;
  close(): Promise<void>;
}

interface Installation {
  id: string;
  appId: string;
  permissions: Record<string, 'read' | 'write'>;
  state: 'active' | 'suspended' | 'deleted';
}

interface MintedToken {
  installationId: string;
  expiresAt: number;
}

const SUPPORTED_API_VERSIONS = new Set(['2022-11-28', '2026-03-10']);
const DOCS = 'https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app';
const DECODE_ERROR = 'A JSON web token could not be decoded';

export async function startGitHubStandIn(
  root: string,
  options: {
    listenHost?: string;
    tokenLifetimeSeconds?: number;
    /**
     * The start of every token instead of `ghs_`, so a secrecy test can look for all tokens
     * minted in a run with one needle; the rest of each token stays random.
     */
    tokenPrefix?: string;
  } = {},
): Promise<GitHubStandIn> {
  const upstream = await startGitUpstream(root);
  const apps = new Map<string, KeyObject>();
  const installations = new Map<string, Installation>();
  const tokens = new Map<string, MintedToken>();
  let lifetimeSeconds = options.tokenLifetimeSeconds ?? 3600;
  let offsetMs = 0;
  let nextAppId = 100_000 + Math.floor(Math.random() * 1000);
  let nextInstallationId = 40_000_000 + Math.floor(Math.random() * 1_000_000);
  const now = () => Date.now() + offsetMs;
  const apiRequests: ApiRequestRecord[] = [];
  const mints: MintRecord[] = [];
  const gitRequests: GitRequestRecord[] = [];

  const prefix = options.tokenPrefix ?? 'ghs_';
  const mint = (
    installation: Installation,
    source: MintRecord['source'],
  ): { token: string; expiresAt: number } => {
    const token = `${prefix}${randomBytes(30)
      .toString('base64url')
      .replace(/[-_]/g, 'x')
      .slice(0, 40 - prefix.length)}`;
    const expiresAt = Math.floor(now() / 1000) * 1000 + lifetimeSeconds * 1000;
    tokens.set(token, { installationId: installation.id, expiresAt });
    mints.push({ at: now(), source, installationId: installation.id, tokenId: tokenId(token), expiresAt });
    return { token, expiresAt };
  };

  const api = (req: IncomingMessage, res: ServerResponse, body: Buffer, path: string) => {
    const record: ApiRequestRecord = {
      at: now(),
      path,
      status: 0,
      accept: req.headers.accept,
      apiVersion: header(req, 'x-github-api-version'),
      userAgent: req.headers['user-agent'],
    };
    apiRequests.push(record);
    const send = (status: number, payload: Record<string, unknown>) => {
      record.status = status;
      if (typeof payload.message === 'string') record.message = payload.message;
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        date: new Date(now()).toUTCString(),
      });
      res.end(JSON.stringify(payload));
    };
    const fail = (status: number, message: string, docs = 'https://docs.github.com/rest') =>
      send(status, { message, documentation_url: docs, status: String(status) });
    if (!req.headers['user-agent']) {
      return fail(
        403,
        'Request forbidden by administrative rules. Please make sure your request has a User-Agent header',
      );
    }
    const version = record.apiVersion;
    if (version !== undefined && !SUPPORTED_API_VERSIONS.has(version)) {
      return fail(400, `API version '${version}' is not supported.`);
    }
    const match = /^\/app\/installations\/([^/]+)\/access_tokens$/.exec(path);
    if (!match || req.method !== 'POST') return fail(404, 'Not Found');
    const jwt = checkJwt(req.headers.authorization, apps, Math.floor(now() / 1000));
    if ('error' in jwt) return fail(401, jwt.error);
    const installation = installations.get(match[1]!);
    const requested = permissionsOf(body);
    const refusal = checkInstallation(installation, jwt.appId, requested);
    if (refusal || !installation || !requested) {
      return fail(
        refusal?.status ?? 500,
        refusal?.message ?? 'Server Error',
        refusal?.status === 400 ? undefined : DOCS,
      );
    }
    const { token, expiresAt } = mint(installation, 'api');
    send(201, {
      token,
      expires_at: new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      permissions: Object.keys(requested).length > 0 ? requested : installation.permissions,
      repository_selection: 'all',
    });
  };

  const git = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const path = new URL(req.url ?? '/', 'http://standin').pathname;
    const { state, token } = tokenState(req.headers.authorization, tokens, installations, now());
    const minted = token ? tokens.get(token) : undefined;
    gitRequests.push({
      at: now(),
      method: req.method ?? 'GET',
      path,
      auth: state,
      tokenId: token ? tokenId(token) : undefined,
      remainingMs: minted ? minted.expiresAt - now() : undefined,
    });
    if (state !== 'valid') {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="GitHub"', 'content-type': 'text/plain' });
      res.end(state === 'none' ? '' : 'remote: Invalid username or token.\n');
      return;
    }
    proxy(req, res, body, upstream.host);
  };

  const server: Server = createServer((req, res) => {
    readBody(req)
      .then((body) => {
        const path = new URL(req.url ?? '/', 'http://standin').pathname;
        if (path.startsWith('/api/v3/')) return api(req, res, body, path.slice('/api/v3'.length));
        return git(req, res, body);
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
  });
  const listenHost = options.listenHost ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(0, listenHost, resolve));
  const host = `${listenHost}:${(server.address() as AddressInfo).port}`;

  return {
    apiUrl: `http://${host}/api/v3`,
    host,
    gitUrl: (repo) => `http://${host}/${repo}`,
    createApp: () => {
      const appId = String(nextAppId++);
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      apps.set(appId, publicKey);
      return { appId, privateKeyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() };
    },
    install: (appId, installOptions = {}) => {
      const id = String(nextInstallationId++);
      const permissions = installOptions.permissions ?? { contents: 'read', metadata: 'read' };
      installations.set(id, { id, appId, permissions, state: 'active' });
      return id;
    },
    suspend: (id) => {
      const installation = installations.get(id);
      if (installation) installation.state = 'suspended';
    },
    uninstall: (id) => {
      const installation = installations.get(id);
      if (installation) installation.state = 'deleted';
    },
    issueToken: (id) => {
      const installation = installations.get(id);
      if (installation?.state !== 'active') throw new Error(`installation ${id} is not active`);
      return mint(installation, 'direct').token;
    },
    setTokenLifetime: (seconds) => {
      lifetimeSeconds = seconds;
    },
    setClockOffset: (ms) => {
      offsetMs = ms;
    },
    apiRequests,
    mints,
    gitRequests,
    expiredTokenUses: () => gitRequests.filter((r) => r.auth === 'expired'),
    upstream,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      await upstream.close();
    },
  };
}

type JwtCheck = { appId: string } | { error: string };

/** GitHub's checks of an App JWT, with GitHub's messages. `now` is in seconds. */
function checkJwt(authorization: string | undefined, apps: Map<string, KeyObject>, now: number): JwtCheck {
  const match = /^Bearer ([^\s]+)$/i.exec(authorization ?? '');
  if (!match) return { error: authorization ? DECODE_ERROR : 'Requires authentication' };
  const parts = match[1]!.split('.');
  if (parts.length !== 3) return { error: DECODE_ERROR };
  const head = decodeJson(parts[0]!);
  const claims = decodeJson(parts[1]!);
  if (!head || !claims || head.alg !== 'RS256') return { error: DECODE_ERROR };
  const appId = typeof claims.iss === 'string' || typeof claims.iss === 'number' ? String(claims.iss) : '';
  const key = apps.get(appId);
  if (!key) return { error: DECODE_ERROR };
  const signed = verify(
    'sha256',
    Buffer.from(`${parts[0]}.${parts[1]}`),
    key,
    Buffer.from(parts[2]!, 'base64url'),
  );
  if (!signed) return { error: DECODE_ERROR };
  const { iat, exp } = claims;
  if (typeof iat !== 'number' || !Number.isInteger(iat) || iat > now) {
    return {
      error:
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
    };
  }
  if (typeof exp !== 'number' || !Number.isInteger(exp) || exp <= now) {
    return {
      error:
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
    };
  }
  if (exp > now + 600 || exp - iat > 600)
    return { error: "'Expiration time' claim ('exp') is too far in the future" };
  return { appId };
}

/** GitHub's answers about the installation itself, once the JWT is good. */
function checkInstallation(
  installation: Installation | undefined,
  appId: string,
  requested: Record<string, string> | undefined,
): { status: number; message: string } | undefined {
  if (!installation || installation.appId !== appId || installation.state === 'deleted') {
    return { status: 404, message: 'Not Found' };
  }
  if (installation.state === 'suspended')
    return { status: 403, message: 'This installation has been suspended' };
  if (requested === undefined) return { status: 400, message: 'Problems parsing JSON' };
  for (const [name, level] of Object.entries(requested)) {
    const granted = installation.permissions[name];
    if (!granted || (level === 'write' && granted !== 'write')) {
      return { status: 422, message: 'The permissions requested are not granted to this installation.' };
    }
  }
  return undefined;
}

function tokenState(
  authorization: string | undefined,
  tokens: Map<string, MintedToken>,
  installations: Map<string, Installation>,
  now: number,
): { state: TokenState; token?: string } {
  if (!authorization) return { state: 'none' };
  const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(authorization);
  if (!match) return { state: 'malformed' };
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { state: 'malformed' };
  const token = decoded.slice(colon + 1);
  const minted = tokens.get(token);
  if (!minted) return { state: 'unknown', token };
  if (installations.get(minted.installationId)?.state !== 'active') return { state: 'revoked', token };
  return { state: now >= minted.expiresAt ? 'expired' : 'valid', token };
}

function permissionsOf(body: Buffer): Record<string, string> | undefined {
  if (body.length === 0) return {};
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { permissions?: Record<string, string> };
    return parsed.permissions ?? {};
  } catch {
    return undefined;
  }
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

function proxy(req: IncomingMessage, res: ServerResponse, body: Buffer, target: string): void {
  const [hostname, port] = target.split(':');
  const headers = { ...req.headers, host: target, 'content-length': String(body.length) };
  delete headers.authorization;
  delete headers['transfer-encoding'];
  const upstreamReq = request(
    { hostname, port: Number(port), method: req.method, path: req.url, headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  upstreamReq.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  upstreamReq.end(body);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function tokenId(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 12);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
