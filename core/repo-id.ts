import { ContractError } from './errors.ts';

/**
 * A repository the cache can hold: `{host}/{path}` as it appears in the git URL, without
 * `.git`. It names the mirror directory, the snapshot prefix and the admin route, so it is
 * validated strictly: every accepted id maps to a path under the data dir and nowhere else.
 * The operator derives a GitMirror's id with the same parser, so both sides always agree on it.
 */
export interface RepoId {
  /** `host/path`, the canonical id. */
  readonly id: string;
  /** Lower-case host, with `:port` when given. */
  readonly host: string;
  /** Path segments after the host, without `.git`. */
  readonly path: string;
}

const HOST =
  /^(?=.{1,253}(?::\d{1,5})?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::\d{1,5})?$/;
const SEGMENT = /^[A-Za-z0-9._~-]{1,100}$/;
const MAX_SEGMENTS = 8;

function reject(message: string): never {
  throw new ContractError('BAD_REPO_PATH', message);
}

/**
 * Parses `host/path[.git]`. Percent-encoding is refused outright rather than decoded:
 * repository paths never need it, and decoding is where traversal tricks (`%2e%2e`,
 * double encoding) get in.
 */
export function parseRepoId(raw: string): RepoId {
  if (raw.length > 512) reject('repository path is too long');
  if (raw.includes('%')) reject('percent-encoded repository paths are not accepted');
  if (raw.includes('\\') || raw.includes('\0')) reject('repository path contains a forbidden character');
  const parts = (raw.startsWith('/') ? raw.slice(1) : raw).replace(/\/$/, '').split('/');
  if (parts.some((p) => p === '')) reject('repository path has an empty segment');
  const host = (parts.shift() ?? '').toLowerCase();
  if (!HOST.test(host)) reject(`"${host.slice(0, 80)}" is not a valid host name`);
  const port = host.split(':')[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) reject('invalid port');
  if (parts.length === 0) reject('repository path has no path after the host');
  if (parts.length > MAX_SEGMENTS) reject(`repository path has more than ${MAX_SEGMENTS} segments`);
  const last = parts.length - 1;
  parts[last] = parts[last]!.replace(/\.git$/, '');
  parts.forEach((segment, i) => {
    if (!SEGMENT.test(segment)) reject(`repository path segment "${segment.slice(0, 80)}" is not allowed`);
    if (segment === '.' || segment === '..') reject('repository path may not contain "." or ".." segments');
    if (i < last && segment.endsWith('.git')) reject('only the last path segment may end in .git');
    if (segment.endsWith('.lock')) reject('repository path segments may not end in .lock');
    // Names the snapshot store uses for its own objects under a repository's prefix.
    if (segment === 'latest.json' || segment.endsWith('.tar.zst')) reject(`"${segment}" is reserved`);
  });
  const path = parts.join('/');
  return { id: `${host}/${path}`, host, path };
}

/** Upstream URL for a repo: https, or http for hosts configured as plain-http. */
export function upstreamUrl(repo: RepoId, httpHosts: ReadonlySet<string>): string {
  const scheme = httpHosts.has(repo.host) ? 'http' : 'https';
  return `${scheme}://${repo.host}/${repo.path}.git`;
}

/**
 * The repo id for an upstream URL, as used in `GITMIRROR_MIRRORS` and admin `PUT` bodies.
 * Credentials in the URL are refused: they belong in the credentials file or Secret.
 */
export function repoIdFromUrl(url: string): RepoId {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return reject(`"${url.slice(0, 200)}" is not a URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')
    reject('only http and https upstreams are supported');
  if (parsed.username || parsed.password) reject('upstream URLs may not contain credentials');
  if (parsed.search || parsed.hash) reject('upstream URLs may not contain a query or fragment');
  return parseRepoId(`${parsed.host}${parsed.pathname}`);
}
