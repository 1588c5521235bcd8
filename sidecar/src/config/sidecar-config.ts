import { resolve } from 'node:path';
import { isLfsPrefetch, LFS_PREFETCH_SCOPES, type LfsPrefetch } from '../../../core/admin-api.ts';
import { parseDuration } from '../../../core/duration.ts';
import { isContractError } from '../../../core/errors.ts';
import { snapshotRetain } from '../../../core/snapshot.ts';
import { fromContractError, GitMirrorError } from '../errors/gitmirror-error.ts';
import { parseByteSize } from './byte-size.ts';

/** Everything the sidecar reads from its environment, parsed and checked once at start. */
export interface SidecarConfig {
  listen: HostPort;
  adminListen: HostPort;
  dataDir: string;
  snapshotStoreUrl: string;
  /** Upstream URLs held from start (standalone mode). */
  mirrors: string[];
  /** Standalone: when set, this process publishes snapshots at this interval. */
  snapshotIntervalMs?: number;
  snapshotRetain: number;
  /** First retry delay of a failed periodic snapshot; doubles per attempt. */
  snapshotRetryBaseMs: number;
  httpHosts: Set<string>;
  allowedHosts: Set<string>;
  /**
   * Mirrors a client request may create (after upstream showed the repository to it);
   * over the bound, requests are proxied uncached. 0: only configured mirrors are held.
   */
  maxOnDemandMirrors: number;
  credentialsFile?: string;
  /** Standalone: a GitHub App (JSON file or mounted Secret directory) whose tokens mirrors of its host use. */
  githubAppFile?: string;
  adminTokenFile?: string;
  fetchIntervalMs: number;
  /** How often, at most, a client's ref request triggers an upstream ls-remote per mirror. */
  refCheckIntervalMs: number;
  /** How long a client request waits for a fetch it triggered before being served what we have. */
  freshnessWaitMs: number;
  repackIntervalMs: number;
  fetchTimeoutMs: number;
  cloneTimeoutMs: number;
  jobConcurrency: number;
  cloneConcurrency: number;
  shutdownTimeoutMs: number;
  /** Max bytes of an upload-pack request body head we buffer to read the wants. */
  maxRequestHeadBytes: number;
  /** LFS objects kept on local disk at most (least recently used evicted first); undefined: no bound. */
  lfsMaxBytes?: number;
  /** Standalone: which refs' LFS objects the snapshot writer prefetches after each fetch. */
  lfsPrefetch: LfsPrefetch;
  /** GITMIRROR_PACK_CACHE_MAX_BYTES; undefined: a tenth of the data volume, worked out at start. 0: off. */
  packCacheMaxBytes?: number;
  /** GITMIRROR_PACK_CACHE_TTL: how long a completed pack answers identical requests. */
  packCacheTtlMs: number;
  /** GITMIRROR_DATA_BUDGET: bytes the data dir may hold; undefined: the filesystem's free space is the only bound. */
  dataBudgetBytes?: number;
  /** Per upstream host: transfers (clone, fetch) at once, and ref checks (ls-remote) per second. */
  upstream: { transfers: number; refChecksPerSecond: number };
  /** Per client on the git listener: requests in flight (0: no limit), and who counts as one client. */
  clientLimit: { maxConcurrent: number; keyBy: ClientKeyMode };
}

/** Who counts as one client of the git listener: its address, or the credentials it sends. */
export type ClientKeyMode = 'address' | 'credentials';

export interface HostPort {
  host: string;
  port: number;
}

function parseHostPort(text: string, name: string): HostPort {
  const match = /^(.*):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[2]);
  if (!match || port > 65535)
    throw new GitMirrorError('CONFIG_INVALID', `${name}: "${text}" is not host:port`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port };
}

function list(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function positiveInt(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new GitMirrorError('CONFIG_INVALID', `${name}: "${text}" is not a positive integer`);
  return n;
}

function nonNegativeInt(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined || text.trim() === '') return fallback;
  const n = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n))
    throw new GitMirrorError('CONFIG_INVALID', `${name}: "${text}" is not a whole number (0 or more)`);
  return n;
}

function positiveNumber(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined || text.trim() === '') return fallback;
  const n = Number(text.trim());
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(n > 0))
    throw new GitMirrorError('CONFIG_INVALID', `${name}: "${text}" is not a positive number`);
  return n;
}

function oneOf<T extends string>(text: string | undefined, values: readonly T[], name: string): T {
  const value = (text || values[0]) as T;
  if (!values.includes(value))
    throw new GitMirrorError('CONFIG_INVALID', `${name}: "${text}" is not one of ${values.join(', ')}`);
  return value;
}

function duration(env: NodeJS.ProcessEnv, name: string, fallback: string): number {
  return envDuration(env[name] || fallback, name);
}

function envDuration(text: string, name: string): number {
  try {
    return parseDuration(text, name);
  } catch (err) {
    throw isContractError(err) ? fromContractError(err) : err;
  }
}

export function loadSidecarConfig(env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  const dataDir = resolve(env.GITMIRROR_DATA_DIR || './.gitmirror');
  const jobConcurrency = positiveInt(env.GITMIRROR_JOB_CONCURRENCY, 4, 'GITMIRROR_JOB_CONCURRENCY');
  const snapshotInterval = env.GITMIRROR_SNAPSHOT_INTERVAL;
  const snapshotOff = !snapshotInterval || snapshotInterval === 'off' || snapshotInterval === '0';
  return {
    listen: parseHostPort(env.GITMIRROR_LISTEN || '0.0.0.0:8080', 'GITMIRROR_LISTEN'),
    adminListen: parseHostPort(env.GITMIRROR_ADMIN_LISTEN || '0.0.0.0:9090', 'GITMIRROR_ADMIN_LISTEN'),
    dataDir,
    snapshotStoreUrl: env.GITMIRROR_SNAPSHOT_STORE || `file://${dataDir}/snapshots`,
    mirrors: list(env.GITMIRROR_MIRRORS),
    snapshotIntervalMs: snapshotOff
      ? undefined
      : envDuration(snapshotInterval, 'GITMIRROR_SNAPSHOT_INTERVAL'),
    snapshotRetryBaseMs: duration(env, 'GITMIRROR_SNAPSHOT_RETRY_BASE', '30s'),
    snapshotRetain: snapshotRetain(
      positiveInt(env.GITMIRROR_SNAPSHOT_RETAIN, 3, 'GITMIRROR_SNAPSHOT_RETAIN'),
    ),
    httpHosts: new Set(list(env.GITMIRROR_HTTP_HOSTS).map((h) => h.toLowerCase())),
    allowedHosts: new Set(
      list(env.GITMIRROR_ALLOWED_HOSTS ?? 'github.com,gitlab.com,bitbucket.org').map((h) => h.toLowerCase()),
    ),
    maxOnDemandMirrors: nonNegativeInt(
      env.GITMIRROR_MAX_ON_DEMAND_MIRRORS,
      100,
      'GITMIRROR_MAX_ON_DEMAND_MIRRORS',
    ),
    credentialsFile: env.GITMIRROR_CREDENTIALS_FILE || undefined,
    githubAppFile: env.GITMIRROR_GITHUB_APP_FILE || undefined,
    adminTokenFile: env.GITMIRROR_ADMIN_TOKEN_FILE || undefined,
    fetchIntervalMs: duration(env, 'GITMIRROR_FETCH_INTERVAL', '5m'),
    refCheckIntervalMs: duration(env, 'GITMIRROR_REF_CHECK_INTERVAL', '5s'),
    freshnessWaitMs: duration(env, 'GITMIRROR_FRESHNESS_WAIT', '30s'),
    repackIntervalMs: duration(env, 'GITMIRROR_REPACK_INTERVAL', '6h'),
    fetchTimeoutMs: duration(env, 'GITMIRROR_FETCH_TIMEOUT', '10m'),
    cloneTimeoutMs: duration(env, 'GITMIRROR_CLONE_TIMEOUT', '1h'),
    jobConcurrency,
    cloneConcurrency: positiveInt(
      env.GITMIRROR_CLONE_CONCURRENCY,
      Math.max(1, Math.floor(jobConcurrency / 2)),
      'GITMIRROR_CLONE_CONCURRENCY',
    ),
    shutdownTimeoutMs: duration(env, 'GITMIRROR_SHUTDOWN_TIMEOUT', '25s'),
    maxRequestHeadBytes: 1024 * 1024,
    lfsMaxBytes: env.GITMIRROR_LFS_MAX_BYTES?.trim()
      ? parseByteSize(env.GITMIRROR_LFS_MAX_BYTES, 'GITMIRROR_LFS_MAX_BYTES')
      : undefined,
    lfsPrefetch: lfsPrefetch(env.GITMIRROR_LFS_PREFETCH),
    packCacheMaxBytes: env.GITMIRROR_PACK_CACHE_MAX_BYTES?.trim()
      ? parseByteSize(env.GITMIRROR_PACK_CACHE_MAX_BYTES, 'GITMIRROR_PACK_CACHE_MAX_BYTES')
      : undefined,
    packCacheTtlMs: duration(env, 'GITMIRROR_PACK_CACHE_TTL', '5m'),
    dataBudgetBytes: env.GITMIRROR_DATA_BUDGET
      ? parseByteSize(env.GITMIRROR_DATA_BUDGET, 'GITMIRROR_DATA_BUDGET')
      : undefined,
    upstream: {
      transfers: positiveInt(env.GITMIRROR_UPSTREAM_TRANSFERS, 4, 'GITMIRROR_UPSTREAM_TRANSFERS'),
      refChecksPerSecond: positiveNumber(
        env.GITMIRROR_UPSTREAM_REF_CHECKS_PER_SECOND,
        2,
        'GITMIRROR_UPSTREAM_REF_CHECKS_PER_SECOND',
      ),
    },
    clientLimit: {
      maxConcurrent: nonNegativeInt(env.GITMIRROR_MAX_CLIENT_REQUESTS, 32, 'GITMIRROR_MAX_CLIENT_REQUESTS'),
      keyBy: oneOf(env.GITMIRROR_CLIENT_KEY, ['address', 'credentials'] as const, 'GITMIRROR_CLIENT_KEY'),
    },
  };
}

function lfsPrefetch(text: string | undefined): SidecarConfig['lfsPrefetch'] {
  const value = text?.trim() || 'None';
  if (isLfsPrefetch(value)) return value;
  throw new GitMirrorError(
    'CONFIG_INVALID',
    `GITMIRROR_LFS_PREFETCH: "${text}" is not one of ${LFS_PREFETCH_SCOPES.join(', ')}`,
  );
}
