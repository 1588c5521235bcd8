import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook deliveries from a forge: GitHub (and Gitea, which sends GitHub's headers and
 * signature alongside its own) and GitLab. Nothing here trusts the payload before the
 * signature is checked; parsing only finds which repository the delivery claims to be about,
 * so the receiver knows whose secret to check it against.
 */
export type WebhookProvider = 'github' | 'gitlab';

export interface Delivery {
  provider: WebhookProvider;
  /** `X-GitHub-Event` (`push`, `create`, `delete`, `ping`, ...) or `X-Gitlab-Event`. */
  event: string;
  /** `X-GitHub-Delivery` / `X-Gitlab-Event-UUID`; the same on a redelivery. */
  id: string | undefined;
  /** What the delivery means for a mirror. */
  action: 'fetch' | 'ping' | 'ignore';
  /** Normalised repository keys (`host/path`, lower case) the payload names. */
  repositories: string[];
}

export class WebhookError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = 'WebhookError';
    this.status = status;
  }
}

/** Lower-cased header lookup over Node's or Fetch's header shapes. */
export type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

export function header(headers: HeaderBag, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** The provider a request claims to come from, by its headers; undefined when none. */
export function providerOf(headers: HeaderBag): WebhookProvider | undefined {
  if (header(headers, 'x-gitlab-event') !== undefined) return 'gitlab';
  if (
    header(headers, 'x-github-event') !== undefined ||
    header(headers, 'x-hub-signature-256') !== undefined
  ) {
    return 'github';
  }
  return undefined;
}

/**
 * Whether the request carries a credential in its provider's form at all: GitHub's
 * `X-Hub-Signature-256: sha256=<64 hex>` or GitLab's `X-Gitlab-Token`. Unsigned deliveries
 * are refused before their body is read.
 */
export function isSigned(provider: WebhookProvider, headers: HeaderBag): boolean {
  if (provider === 'gitlab') return (header(headers, 'x-gitlab-token') ?? '') !== '';
  return /^sha256=[0-9a-f]{64}$/i.test(header(headers, 'x-hub-signature-256') ?? '');
}

/**
 * Checks a delivery against one secret in constant time. GitHub: HMAC-SHA256 of the raw body,
 * hex, after `sha256=` ("Validating webhook deliveries"). GitLab sends the secret itself in
 * `X-Gitlab-Token`; both sides are hashed first so the comparison's length leaks nothing.
 */
export function verifyDelivery(
  provider: WebhookProvider,
  headers: HeaderBag,
  body: Buffer,
  secret: string,
): boolean {
  if (secret === '') return false;
  if (provider === 'gitlab') {
    const sent = createHash('sha256')
      .update(header(headers, 'x-gitlab-token') ?? '')
      .digest();
    return timingSafeEqual(sent, createHash('sha256').update(secret).digest());
  }
  const signature = header(headers, 'x-hub-signature-256') ?? '';
  if (!/^sha256=[0-9a-f]{64}$/i.test(signature)) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  return timingSafeEqual(Buffer.from(signature.slice('sha256='.length), 'hex'), expected);
}

/** The `X-Hub-Signature-256` value GitHub sends for this body and secret (tests, tools). */
export function signGitHubDelivery(body: Buffer | string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const FETCH_EVENTS: Readonly<Record<WebhookProvider, ReadonlySet<string>>> = {
  // A push moves refs; create and delete add or remove a branch or tag.
  github: new Set(['push', 'create', 'delete']),
  gitlab: new Set(['Push Hook', 'Tag Push Hook']),
};

/**
 * Reads a delivery's event, id and repository. The body is JSON, or (GitHub's other content
 * type) `application/x-www-form-urlencoded` with the JSON in `payload`. Throws `WebhookError`
 * 400 when it is neither or names no repository.
 */
export function parseDelivery(provider: WebhookProvider, headers: HeaderBag, body: Buffer): Delivery {
  const event =
    provider === 'gitlab'
      ? (header(headers, 'x-gitlab-event') ?? '')
      : (header(headers, 'x-github-event') ?? '');
  const id =
    provider === 'gitlab' ? header(headers, 'x-gitlab-event-uuid') : header(headers, 'x-github-delivery');
  const payload = payloadOf(header(headers, 'content-type') ?? '', body);
  const urls =
    provider === 'gitlab'
      ? [payload.project?.git_http_url, payload.project?.web_url, payload.repository?.git_http_url]
      : [payload.repository?.clone_url, payload.repository?.html_url, payload.repository?.url];
  const repositories = [
    ...new Set(urls.flatMap((url) => (typeof url === 'string' ? [repositoryKey(url)] : [])).filter(Boolean)),
  ] as string[];
  if (repositories.length === 0) throw new WebhookError(400, 'the payload names no repository URL');
  const action = event === 'ping' ? 'ping' : FETCH_EVENTS[provider].has(event) ? 'fetch' : 'ignore';
  return { provider, event, id: id || undefined, action, repositories };
}

interface Payload {
  repository?: { clone_url?: unknown; html_url?: unknown; url?: unknown; git_http_url?: unknown };
  project?: { git_http_url?: unknown; web_url?: unknown };
}

function payloadOf(contentType: string, body: Buffer): Payload {
  let text = body.toString('utf8');
  if (/^application\/x-www-form-urlencoded/i.test(contentType)) {
    text = new URLSearchParams(text).get('payload') ?? '';
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new WebhookError(400, 'the payload is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new WebhookError(400, 'the payload is not a JSON object');
  }
  return value as Payload;
}

/**
 * A repository URL reduced to `host/path` for matching: scheme, credentials, default ports,
 * `.git`, trailing slashes and case dropped (GitHub, GitLab and Gitea treat owner and
 * repository names case-insensitively). `git@host:org/repo.git` and `ssh://` forms map to the
 * same key as the https URL. Undefined when it is not a repository URL.
 */
export function repositoryKey(url: string): string | undefined {
  const scp = /^[\w.-]+@([\w.-]+):(?!\/)(.+)$/.exec(url);
  let host: string;
  let path: string;
  if (scp) {
    host = scp[1]!;
    path = scp[2]!;
  } else {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return undefined;
    }
    if (!['http:', 'https:', 'ssh:', 'git:'].includes(parsed.protocol)) return undefined;
    host = parsed.protocol === 'ssh:' ? parsed.hostname : parsed.host;
    path = parsed.pathname;
  }
  const cleanPath = path
    .replace(/^\/+/, '')
    .replace(/\/+$/, '')
    .replace(/\.git$/i, '');
  if (cleanPath === '' || host === '') return undefined;
  return `${host}/${cleanPath}`.toLowerCase();
}
