import type { Credentials } from './credentials.ts';
import type { WireErrorCode } from './errors.ts';
import type { SnapshotRef } from './snapshot.ts';

export type { SnapshotRef } from './snapshot.ts';

/**
 * The sidecar admin API's JSON shapes: the one contract between the operator and the
 * sidecar (`docs/admin-api.md` describes the routes). Durations are seconds.
 */

export type Access = 'Public' | 'Private';

/** Body of `PUT /v1/mirrors/{id}`: the desired configuration of one mirror. */
export interface MirrorSpec {
  /** Upstream URL, http(s), no credentials; must name the same repo as `{id}`. */
  url: string;
  /** Seconds between periodic fetches. */
  fetchIntervalSeconds?: number;
  /** Whether this replica publishes snapshots of the mirror, and how often. */
  snapshot?: { writer: boolean; intervalSeconds?: number; retain?: number };
  access?: Access;
  /** Upstream credentials; kept in memory only, never written to disk or echoed back. */
  credentials?: Credentials;
  /** Git LFS: which refs' objects this replica prefetches after each fetch, when it is the writer. */
  lfs?: { prefetch?: LfsPrefetch };
  /**
   * The other replicas of this mirror, by their admin API's base URL (`http://10.0.0.7:9090`),
   * so that upstream sees one replica's traffic, not the fleet's (docs/admin-api.md, "Fleet").
   * On the snapshot writer: `followers`, told after each fetch that moved refs. On the others:
   * `writer`, which they fetch from instead of upstream (and fall back to upstream when it cannot
   * serve). Absent: this replica fetches from upstream on its own.
   */
  fleet?: FleetPeers;
}

export interface FleetPeers {
  writer?: string;
  followers?: string[];
}

/** A mirror's place in its fleet, as this replica sees it: `MirrorStatus.fleet`. */
export interface MirrorFleetStatus {
  /** `writer` with followers, `follower` with a writer to fetch from, else `alone`. */
  role: 'writer' | 'follower' | 'alone';
  /** The writer's admin URL (followers only). */
  writer?: string;
  /** How many followers this writer tells (writer only). */
  followers?: number;
  /** Where the last successful fetch came from. */
  lastFetchSource?: 'writer' | 'upstream';
  /** Why the last fetch from the writer failed (the fetch then went to upstream); cleared by the next success. */
  writerError?: string;
}

/** Which refs' LFS objects a prefetch downloads: HEAD's tree, every ref's tip, or none. */
export const LFS_PREFETCH_SCOPES = ['Head', 'AllRefs', 'None'] as const;

export type LfsPrefetch = (typeof LFS_PREFETCH_SCOPES)[number];

export function isLfsPrefetch(value: unknown): value is LfsPrefetch {
  return (LFS_PREFETCH_SCOPES as readonly unknown[]).includes(value);
}

/** The last LFS prefetch of a mirror (on the snapshot writer). */
export interface LfsPrefetchStatus {
  finishedAt: string;
  /** Distinct objects the refs point to; how many the store already had; downloaded; failed. */
  objects: number;
  held: number;
  fetched: number;
  failed: number;
  /** The first failure, when there was one. */
  error?: string;
}

export type MirrorState = 'empty' | 'restoring' | 'cloning' | 'ready' | 'failed';

export type RestorePhase =
  | 'idle'
  | 'resolving'
  | 'downloading'
  | 'checking'
  | 'catching-up'
  | 'cloning'
  | 'done'
  | 'failed';

export interface RestoreStatus {
  phase: RestorePhase;
  /** The snapshot key being (or last) restored; absent for a plain clone. */
  key?: string;
  bytesDone: number;
  bytesTotal?: number;
  startedAt?: string;
  finishedAt?: string;
  /** How the mirror came to be: from a snapshot, a clone (fallback or no snapshot) or found on disk. */
  source?: 'snapshot' | 'clone' | 'disk';
  /** Why a restore fell back to clone, or why the whole warm-up failed. */
  error?: string;
}

export interface SnapshotJobStatus {
  writer: boolean;
  intervalSeconds?: number;
  retain?: number;
  lastAttemptAt?: string;
  lastResult?: 'published' | 'unchanged' | 'failed';
  lastError?: string;
  running: boolean;
}

/** One element of `GET /v1/mirrors`, and the body of `GET /v1/mirrors/{id}`. */
export interface MirrorStatus {
  id: string;
  url: string;
  state: MirrorState;
  /** True once the mirror serves from local data (restored or cloned, and caught up). */
  ready: boolean;
  access: Access;
  /**
   * configured (GITMIRROR_MIRRORS or a PUT), on-demand (created by a client's request) or disk
   * (found on disk at start, not configured since). All but configured count against
   * GITMIRROR_MAX_ON_DEMAND_MIRRORS. Optional: sidecars before it omit it.
   */
  origin?: 'configured' | 'on-demand' | 'disk';
  /** `mirrorSpecDigest` of the last spec PUT (absent for mirrors configured by env or found on disk). */
  specDigest?: string;
  fetchIntervalSeconds: number;
  /** Commit of HEAD in the local mirror. */
  head?: string;
  lastFetchTime?: string;
  lastFetchError?: string;
  /** Seconds since the last successful fetch; grows while upstream is unreachable. */
  stalenessSeconds?: number;
  restore: RestoreStatus;
  snapshot: SnapshotJobStatus;
  /** The newest snapshot published in the store for this repo, as last seen. */
  latestSnapshot?: SnapshotRef;
  /** Git LFS prefetch setting and its last run. Optional: sidecars before it omit it. */
  lfs?: { prefetch: LfsPrefetch; lastPrefetch?: LfsPrefetchStatus };
  /** Its place on the data volume. Optional: sidecars before it omit it. */
  disk?: MirrorDiskStatus;
  /** Where it fetches from in its fleet. Optional: sidecars before it omit it. */
  fleet?: MirrorFleetStatus;
}

/** What a mirror takes on the data volume and, while it cannot be held, why. */
export interface MirrorDiskStatus {
  /** Bytes on disk (allocated blocks), as measured after its last warm-up, fetch or repack. */
  bytes?: number;
  /** When a client was last served from it: on-demand mirrors idle the longest are evicted first. */
  lastServedTime?: string;
  /** Set while its warm-up is refused for lack of space (INSUFFICIENT_STORAGE), until one succeeds. */
  shortfall?: StorageShortfall;
}

/** Why a write did not fit the data budget even after eviction. */
export interface StorageShortfall {
  /** Bytes the write needed in all. */
  neededBytes: number;
  /** Bytes that could not be found even by evicting everything evictable. */
  missingBytes: number;
  /** GITMIRROR_DATA_BUDGET, when one is set. */
  limitBytes?: number;
  /** The sidecar's own sentence with every number, e.g. `restore of github.com/org/repo needs 1.2 GiB: ...`. */
  message: string;
}

/** The data budget of one sidecar: `GET /v1/mirrors`'s `storage`. */
export interface StorageStatus {
  /** GITMIRROR_DATA_BUDGET; absent when none is set (usage is still accounted). */
  limitBytes?: number;
  /** What every holder holds now. */
  usedBytes: number;
  /** Set aside for writes under way (restores, clones, fetches, repacks). */
  reservedBytes: number;
  /** Bytes by holder: `mirrors`, `spool` and each cache. */
  holders: { name: string; bytes: number }[];
  /** Writes refused for lack of space since start. */
  refusals: number;
  /** Entries evicted since start, by holder and tier. */
  evicted: { holder: string; tier: 'expired' | 'cache' | 'idle-mirror'; count: number; bytes: number }[];
}

/** One upstream host as this sidecar treats it: `GET /v1/mirrors`'s `upstreams`. */
export interface UpstreamHostStatus {
  host: string;
  /** While the host is backed off (it answered 429/503 with Retry-After): until when. */
  backoffUntil?: string;
  /** The answer that started or last extended the backoff, e.g. `429, Retry-After 5 s`. */
  backoffReason?: string;
  transfers: { active: number; queued: number; limit: number };
  refChecks: { active: number; queued: number; perSecond: number };
}

/** Why a client request created no mirror; see `OnDemandStatus.refused`. */
export type OnDemandRefusal = 'upstream' | 'disabled' | 'limit' | 'backoff';

/** Mirrors created by client requests, against GITMIRROR_MAX_ON_DEMAND_MIRRORS. */
export interface OnDemandStatus {
  /** GITMIRROR_MAX_ON_DEMAND_MIRRORS; 0 means no mirror is created on demand. */
  limit: number;
  /** Mirrors held now that count against it (origin on-demand or disk). */
  count: number;
  /**
   * Requests since start for a repository without a mirror that created none (they were
   * proxied to upstream uncached), by reason: upstream did not answer info/refs with a git
   * advertisement (401, 403, 404, 5xx, a redirect, not git); on-demand mirrors are off; the
   * limit is reached; the repository's last on-demand warm-up failed recently.
   */
  refused: Record<OnDemandRefusal, number>;
}

export interface MirrorList {
  mirrors: MirrorStatus[];
  /** Optional: sidecars before it omit it. */
  onDemand?: OnDemandStatus;
  /** Optional: sidecars before it omit it. */
  storage?: StorageStatus;
  /** Upstream hosts asked since start. Optional: sidecars before it omit it. */
  upstreams?: UpstreamHostStatus[];
}

/** Body of `POST /v1/mirrors/{id}/restore`; without a key the latest manifest is used. */
export interface RestoreRequest {
  key?: string;
  /** Restore again even if the mirror is already ready. */
  force?: boolean;
}

/** Error body of every non-2xx answer. */
export interface ErrorBody {
  error: { code: WireErrorCode; message: string };
}
