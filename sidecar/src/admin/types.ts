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
  credentials?: { username?: string; password: string };
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

export interface SnapshotRef {
  key: string;
  commit: string;
  createdAt: string;
  sizeBytes: number;
}

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
}

export interface MirrorList {
  mirrors: MirrorStatus[];
}

/** Body of `POST /v1/mirrors/{id}/restore`; without a key the latest manifest is used. */
export interface RestoreRequest {
  key?: string;
  /** Restore again even if the mirror is already ready. */
  force?: boolean;
}

/** Error body of every non-2xx admin answer. */
export interface ErrorBody {
  error: { code: string; message: string };
}
