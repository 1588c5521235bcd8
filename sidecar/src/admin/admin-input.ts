import {
  type FleetPeers,
  isLfsPrefetch,
  LFS_PREFETCH_SCOPES,
  type MirrorSpec,
  type RestoreRequest,
} from '../../../core/admin-api.ts';
import { MIN_SNAPSHOT_RETAIN } from '../../../core/snapshot.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

function bad(message: string): never {
  throw new GitMirrorError('BAD_REQUEST', message);
}

function optionalNumber(value: unknown, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    bad(`${name} must be a number between ${min} and ${max}`);
  }
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates a `PUT /v1/mirrors/{id}` body field by field; unknown fields are refused so typos surface. */
export function parseMirrorSpec(body: unknown): MirrorSpec {
  if (!isObject(body)) bad('body must be a JSON object');
  const known = new Set(['url', 'fetchIntervalSeconds', 'snapshot', 'access', 'credentials', 'lfs', 'fleet']);
  for (const key of Object.keys(body)) if (!known.has(key)) bad(`unknown field "${key.slice(0, 40)}"`);
  if (typeof body.url !== 'string' || body.url.length > 2048) bad('url must be a string');
  const spec: MirrorSpec = { url: body.url };
  spec.fetchIntervalSeconds = optionalNumber(
    body.fetchIntervalSeconds,
    'fetchIntervalSeconds',
    10,
    7 * 86400,
  );
  if (body.access !== undefined) {
    if (body.access !== 'Public' && body.access !== 'Private') bad('access must be Public or Private');
    spec.access = body.access;
  }
  if (body.snapshot !== undefined) spec.snapshot = parseSnapshot(body.snapshot);
  if (body.credentials !== undefined) spec.credentials = parseCredentials(body.credentials);
  if (body.lfs !== undefined) spec.lfs = parseLfs(body.lfs);
  if (body.fleet !== undefined) spec.fleet = parseFleet(body.fleet);
  return spec;
}

/** More followers than this is not a fleet the operator runs; a typo or a loop, refused. */
const MAX_FOLLOWERS = 256;

function parseFleet(value: unknown): FleetPeers {
  if (!isObject(value) || Object.keys(value).some((k) => k !== 'writer' && k !== 'followers'))
    bad('fleet must be {writer?, followers?}');
  const fleet: FleetPeers = {};
  if (value.writer !== undefined) fleet.writer = parseBaseUrl(value.writer, 'fleet.writer');
  if (value.followers !== undefined) {
    if (!Array.isArray(value.followers) || value.followers.length > MAX_FOLLOWERS)
      bad(`fleet.followers must be a list of at most ${MAX_FOLLOWERS} URLs`);
    fleet.followers = value.followers.map((f, i) => parseBaseUrl(f, `fleet.followers[${i}]`));
  }
  if (fleet.writer !== undefined && fleet.followers?.length)
    bad('fleet has a writer or followers, not both: the writer is the one replica with followers');
  return fleet;
}

/** An admin API's base URL: http(s), a host, nothing after it (no credentials, path or query). */
function parseBaseUrl(value: unknown, name: string): string {
  const url = typeof value === 'string' && value.length <= 512 ? URL.parse(value) : null;
  if (
    !url ||
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    url.username ||
    url.password ||
    url.pathname !== '/' ||
    url.search ||
    url.hash
  )
    bad(`${name} must be an admin API base URL such as http://10.0.0.7:9090`);
  return url.origin;
}

function parseLfs(value: unknown): NonNullable<MirrorSpec['lfs']> {
  if (!isObject(value) || Object.keys(value).some((k) => k !== 'prefetch')) bad('lfs must be {prefetch?}');
  const { prefetch } = value;
  if (prefetch === undefined) return {};
  if (!isLfsPrefetch(prefetch)) bad(`lfs.prefetch must be one of ${LFS_PREFETCH_SCOPES.join(', ')}`);
  return { prefetch };
}

function parseSnapshot(value: unknown): NonNullable<MirrorSpec['snapshot']> {
  if (!isObject(value) || typeof value.writer !== 'boolean')
    bad('snapshot must be {writer: boolean, intervalSeconds?, retain?}');
  return {
    writer: value.writer,
    intervalSeconds: optionalNumber(value.intervalSeconds, 'snapshot.intervalSeconds', 60, 30 * 86400),
    retain: optionalNumber(value.retain, 'snapshot.retain', MIN_SNAPSHOT_RETAIN, 1000),
  };
}

function parseCredentials(value: unknown): NonNullable<MirrorSpec['credentials']> {
  if (
    !isObject(value) ||
    typeof value.password !== 'string' ||
    value.password.length === 0 ||
    value.password.length > 4096
  ) {
    bad('credentials must be {username?, password}');
  }
  if (value.username !== undefined && (typeof value.username !== 'string' || value.username.length > 256)) {
    bad('credentials.username must be a string');
  }
  const unknown = Object.keys(value).find((key) => !['username', 'password', 'expiresAt'].includes(key));
  if (unknown !== undefined) bad(`unknown field "credentials.${unknown.slice(0, 40)}"`);
  const credentials: NonNullable<MirrorSpec['credentials']> = {
    username: value.username as string | undefined,
    password: value.password,
  };
  if (value.expiresAt !== undefined)
    credentials.expiresAt = parseTime(value.expiresAt, 'credentials.expiresAt');
  return credentials;
}

/** An RFC 3339 time with a zone, as Kubernetes and GitHub write them. */
function parseTime(value: unknown, name: string): string {
  const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
  if (typeof value !== 'string' || !rfc3339.test(value) || Number.isNaN(Date.parse(value))) {
    bad(`${name} must be an RFC 3339 time such as 2026-01-01T12:00:00Z`);
  }
  return value;
}

export function parseRestoreRequest(body: unknown): RestoreRequest {
  if (body === undefined || body === null || (isObject(body) && Object.keys(body).length === 0)) return {};
  if (!isObject(body)) bad('body must be a JSON object');
  if (body.key !== undefined && (typeof body.key !== 'string' || body.key.length > 1024))
    bad('key must be a string');
  if (body.force !== undefined && typeof body.force !== 'boolean') bad('force must be a boolean');
  return { key: body.key as string | undefined, force: body.force as boolean | undefined };
}
