import type {
  Access,
  MirrorState,
  MirrorStatus,
  RestoreStatus,
  SnapshotJobStatus,
  SnapshotRef,
} from '../../../core/admin-api.ts';
import type { RepoId } from '../../../core/repo-id.ts';
import type { Credentials } from '../git/credentials.ts';
import type { MirrorGitContext } from './git-mirror-ops.ts';

/**
 * How a mirror came to be held: named by GITMIRROR_MIRRORS or a `PUT` (configured), created by
 * a client's request (on-demand), or found on disk at start and not configured since (disk).
 * Only configured mirrors are outside GITMIRROR_MAX_ON_DEMAND_MIRRORS.
 */
export type MirrorOrigin = 'configured' | 'on-demand' | 'disk';

/** How long a client request waits to start another warm-up after `failures` failed ones: 5 s, doubling, up to 5 min. */
export function warmupRetryDelayMs(failures: number): number {
  return failures === 0 ? 0 : Math.min(300_000, 5_000 * 2 ** (failures - 1));
}

export interface MirrorSettings {
  fetchIntervalMs: number;
  snapshot: { writer: boolean; intervalMs?: number; retain: number };
  access: Access;
  credentials?: Credentials;
}

/**
 * One mirror's identity, desired settings and observed state. It holds no locks: its jobs
 * are serialized by the scheduler, and serving never locks (a clone must not hold up a fetch).
 */
export class Mirror {
  readonly repo: RepoId;
  readonly upstream: string;
  readonly dir: string;
  origin: MirrorOrigin;
  settings: MirrorSettings;
  state: MirrorState = 'empty';
  head?: string;
  lastFetchAt?: number;
  lastFetchError?: string;
  /** Whether the most recent fetch succeeded; a snapshot is never taken after a failed one. */
  lastFetchOk = false;
  lastUpstreamCheckAt = 0;
  restore: RestoreStatus = { phase: 'idle', bytesDone: 0 };
  snapshot: Omit<SnapshotJobStatus, 'writer' | 'intervalSeconds' | 'retain'> = { running: false };
  latestSnapshot?: SnapshotRef;
  /** Digest of the refs in the last published snapshot, to skip unchanged mirrors. */
  publishedRefsDigest?: string;
  /** In-flight local serves; a replaced mirror dir is deleted only once they finish. */
  activeServes = 0;
  /** Single-flight handle for the ls-remote freshness check. */
  freshnessCheck?: Promise<void>;
  /** Single-flight handle for warm-up (restore or clone). */
  warming?: Promise<void>;
  removed = false;
  /** Consecutive failed warm-ups, and when the last one failed: client requests back off. */
  warmupFailures = 0;
  lastWarmupFailureAt = 0;
  /** Digest of the spec last applied through the admin API. */
  specDigest?: string;

  constructor(
    repo: RepoId,
    upstream: string,
    dir: string,
    settings: MirrorSettings,
    origin: MirrorOrigin = 'configured',
  ) {
    this.repo = repo;
    this.upstream = upstream;
    this.dir = dir;
    this.settings = settings;
    this.origin = origin;
  }

  get id(): string {
    return this.repo.id;
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /**
   * Whether a client request may start another warm-up after failures (a repository that
   * upstream does not let us clone must not be re-cloned on every request). Admin restores
   * are explicit and do not wait.
   */
  mayRetryWarmup(now = Date.now()): boolean {
    return now - this.lastWarmupFailureAt >= warmupRetryDelayMs(this.warmupFailures);
  }

  gitContext(git: MirrorGitContext['git']): MirrorGitContext {
    return { git, dir: this.dir, upstream: this.upstream, credentials: this.settings.credentials };
  }

  status(now = Date.now()): MirrorStatus {
    const { snapshot } = this.settings;
    return {
      id: this.id,
      url: this.upstream,
      state: this.state,
      ready: this.ready,
      access: this.settings.access,
      origin: this.origin,
      specDigest: this.specDigest,
      fetchIntervalSeconds: this.settings.fetchIntervalMs / 1000,
      head: this.head,
      lastFetchTime: this.lastFetchAt ? new Date(this.lastFetchAt).toISOString() : undefined,
      lastFetchError: this.lastFetchError,
      stalenessSeconds: this.lastFetchAt ? Math.round((now - this.lastFetchAt) / 1000) : undefined,
      restore: { ...this.restore },
      snapshot: {
        ...this.snapshot,
        writer: snapshot.writer,
        intervalSeconds: snapshot.intervalMs ? snapshot.intervalMs / 1000 : undefined,
        retain: snapshot.retain,
      },
      latestSnapshot: this.latestSnapshot,
    };
  }
}
