import type {
  Access,
  FleetPeers,
  LfsPrefetch,
  LfsPrefetchStatus,
  MirrorFleetStatus,
  MirrorState,
  MirrorStatus,
  RestorePhase,
  RestoreStatus,
  SnapshotJobStatus,
  SnapshotRef,
  StorageShortfall,
} from '../../../core/admin-api.ts';
import { type Clock, systemClock } from '../../../core/clock.ts';
import type { RepoId } from '../../../core/repo-id.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { CredentialSource } from '../git/credentials.ts';
import type { HostGate } from '../upstream/host-gate.ts';
import type { MirrorGitContext } from './git-mirror-ops.ts';

/**
 * How a mirror came to be held: named by GITMIRROR_MIRRORS or a `PUT` (configured), created by
 * a client's request (on-demand), or found on disk at start and not configured since (disk).
 * Only configured mirrors are outside GITMIRROR_MAX_ON_DEMAND_MIRRORS.
 */
export type MirrorOrigin = 'configured' | 'on-demand' | 'disk';

export interface MirrorSettings {
  fetchIntervalMs: number;
  snapshot: { writer: boolean; intervalMs?: number; retain: number };
  access: Access;
  credentials?: CredentialSource;
  lfs: { prefetch: LfsPrefetch };
  /** The other replicas of the mirror (the operator's; `{}` alone): who to fetch from, or tell. */
  fleet: FleetPeers;
}

/** The steps of a warm-up, in order; `cloning` is also where a failed restore falls back to. */
export type WarmupPhase = 'resolving' | 'downloading' | 'checking' | 'catching-up' | 'cloning';

/**
 * Where a mirror is in its life. `serving`: data installed by an earlier warm-up is still
 * served, so a forced restore, or one that fails, never takes a ready mirror out of service.
 * `removed` is final: a job that finishes after removal cannot bring the mirror back.
 */
export type Lifecycle =
  | { kind: 'empty' }
  | { kind: 'warming'; phase: WarmupPhase; serving: boolean }
  | { kind: 'ready' }
  | { kind: 'failed'; serving: boolean }
  | { kind: 'removed' };

/**
 * What a fetch came to; a successful one reports the mirror's HEAD after it and where it came
 * from (upstream unless said otherwise).
 */
export type FetchResult =
  | { ok: true; head: string | undefined; source?: FetchSource }
  | { ok: false; error: string };

/** Upstream itself, or the fleet's snapshot writer, which fetched from upstream. */
export type FetchSource = 'upstream' | 'writer';

/**
 * How a warm-up ended in a servable mirror: installed from a snapshot or a clone (then with
 * the outcome of bringing it up to date with upstream), or found complete on disk at start.
 */
export type Readiness =
  | { source: 'disk'; head: string | undefined }
  | {
      source: 'snapshot' | 'clone';
      head: string | undefined;
      fetched: { ok: true } | { ok: false; error: string };
    };

export type SnapshotResult =
  | { ok: true; result: 'published' | 'unchanged'; latest: SnapshotRef }
  | { ok: false; error: string };

export interface MirrorInit {
  repo: RepoId;
  upstream: string;
  dir: string;
  settings: MirrorSettings;
  origin?: MirrorOrigin;
  clock?: Clock;
  /** Its upstream host's gate, which every clone, fetch and ls-remote of it passes. */
  gate?: HostGate;
}

/**
 * One mirror's identity, desired settings and observed state, and the only writer of that
 * state: callers report what happened (a warm-up began, a fetch failed, a snapshot was
 * published) and the mirror decides what it now is. It holds no locks: its jobs are
 * serialized by the scheduler, and serving never locks (a clone must not hold up a fetch).
 */
export class Mirror {
  readonly repo: RepoId;
  readonly upstream: string;
  readonly dir: string;
  readonly #clock: Clock;
  readonly #gate?: HostGate;
  #origin: MirrorOrigin;
  #settings: MirrorSettings;
  /** Digest of the spec last applied through the admin API. */
  #specDigest?: string;
  #lifecycle: Lifecycle = { kind: 'empty' };
  /** The current or last warm-up: what was restored, how far it got, why it fell back or failed. */
  #warmup: Omit<RestoreStatus, 'phase'> = { bytesDone: 0 };
  #head?: string;
  #lastFetchAt?: number;
  #lastFetchError?: string;
  #lastUpstreamCheckAt = 0;
  #snapshot: Omit<SnapshotJobStatus, 'writer' | 'intervalSeconds' | 'retain'> = { running: false };
  #latestSnapshot?: SnapshotRef;
  /** In-flight local serves; a replaced mirror dir is deleted only once they finish. */
  #activeServes = 0;
  /** The last LFS prefetch (writer only), and the refs it covered so an unchanged mirror is skipped. */
  #lfsPrefetch?: LfsPrefetchStatus & { covered: string };
  /** Its place on the data volume: measured size, last local serve, and why it cannot be held. */
  #disk: { bytes?: number; lastServedAt?: number; shortfall?: StorageShortfall } = {};
  /** Where the last fetch came from, and why the writer could not serve the last one it was asked. */
  #fleet: { lastFetchSource?: FetchSource; writerError?: string } = {};

  constructor(init: MirrorInit) {
    this.repo = init.repo;
    this.upstream = init.upstream;
    this.dir = init.dir;
    this.#settings = init.settings;
    this.#origin = init.origin ?? 'configured';
    this.#clock = init.clock ?? systemClock;
    this.#gate = init.gate;
  }

  get id(): string {
    return this.repo.id;
  }

  get origin(): MirrorOrigin {
    return this.#origin;
  }

  get settings(): Readonly<MirrorSettings> {
    return this.#settings;
  }

  get lifecycle(): Readonly<Lifecycle> {
    return this.#lifecycle;
  }

  /** Whether clients are served from local data. */
  get ready(): boolean {
    return this.state === 'ready';
  }

  get state(): MirrorState {
    const life = this.#lifecycle;
    switch (life.kind) {
      case 'ready':
        return 'ready';
      case 'warming':
        if (life.serving) return 'ready';
        return life.phase === 'cloning' ? 'cloning' : 'restoring';
      case 'failed':
        return life.serving ? 'ready' : 'failed';
      default:
        return 'empty';
    }
  }

  get head(): string | undefined {
    return this.#head;
  }

  get restore(): RestoreStatus {
    return { phase: this.restorePhase(), ...this.#warmup };
  }

  get snapshot(): Readonly<Omit<SnapshotJobStatus, 'writer' | 'intervalSeconds' | 'retain'>> {
    return this.#snapshot;
  }

  get activeServes(): number {
    return this.#activeServes;
  }

  /** Seconds since the last successful fetch (or warm-up), if there was one. */
  stalenessSeconds(): number | undefined {
    return this.#lastFetchAt === undefined ? undefined : (this.#clock.now() - this.#lastFetchAt) / 1000;
  }

  /** Whether upstream's refs were last compared with ours at least `intervalMs` ago. */
  upstreamCheckDue(intervalMs: number): boolean {
    return this.#clock.now() - this.#lastUpstreamCheckAt >= intervalMs;
  }

  // --- configuration ---------------------------------------------------------------------

  /** Named by GITMIRROR_MIRRORS or the admin API: no longer counts as on-demand. */
  markConfigured(): void {
    this.#origin = 'configured';
  }

  /**
   * A spec applied through the admin API. Says whether this replica lost the snapshot writer
   * role, and whether the periodic work's schedule changed: a PUT that only hands over new
   * credentials (the operator's token rotation, every half hour or so) must not move the next
   * periodic fetch, or a fetch interval longer than the rotation would never come round.
   */
  applySpec(settings: MirrorSettings, specDigest: string): { demoted: boolean; rescheduled: boolean } {
    const before = this.#settings;
    const demoted = before.snapshot.writer && !settings.snapshot.writer;
    const rescheduled =
      before.fetchIntervalMs !== settings.fetchIntervalMs ||
      before.snapshot.writer !== settings.snapshot.writer ||
      before.snapshot.intervalMs !== settings.snapshot.intervalMs;
    this.#settings = settings;
    this.#specDigest = specDigest;
    this.#origin = 'configured';
    return { demoted, rescheduled };
  }

  // --- warm-up -----------------------------------------------------------------------------

  /**
   * Starts a warm-up (restore, else clone) of `key` or the latest snapshot. The caller keeps
   * warm-ups single-flight; a second one while one runs, or one after removal, is refused.
   */
  beginWarmup(key?: string): void {
    const life = this.#lifecycle;
    if (life.kind === 'removed')
      throw new GitMirrorError('ABORTED', `${this.id} was removed; not warming it up`);
    if (life.kind === 'warming') throw new GitMirrorError('CONFLICT', `${this.id} is already warming up`);
    this.#lifecycle = { kind: 'warming', phase: 'resolving', serving: this.ready };
    this.#warmup = { bytesDone: 0, startedAt: this.isoNow(), key };
  }

  downloadingSnapshot(): void {
    this.toPhase('downloading');
  }

  warmupProgress(progress: { bytesDone: number; bytesTotal?: number }): void {
    if (this.#lifecycle.kind !== 'warming') return;
    this.#warmup.bytesDone = progress.bytesDone;
    this.#warmup.bytesTotal = progress.bytesTotal;
  }

  /** The archive is unpacked; `key` is the snapshot actually restored (the latest, if none was named). */
  checkingSnapshot(key: string): void {
    if (this.toPhase('checking')) this.#warmup.key = key;
  }

  catchingUp(): void {
    this.toPhase('catching-up');
  }

  /** Cloning, because there is no snapshot or restoring one failed (`fallbackReason` says which). */
  cloning(fallbackReason?: string): void {
    if (this.toPhase('cloning')) this.#warmup.error = fallbackReason;
  }

  /** The warm-up installed servable data (or it was found on disk at start): serve it. */
  readyFrom(readiness: Readiness): void {
    const from = this.#lifecycle.kind;
    if (from !== (readiness.source === 'disk' ? 'empty' : 'warming')) return;
    this.#lifecycle = { kind: 'ready' };
    this.#head = readiness.head;
    this.#disk.shortfall = undefined;
    // Never served yet: it counts as used from now, so a fresh mirror is not the first evicted.
    this.#disk.lastServedAt ??= this.#clock.now();
    if (readiness.source === 'disk') {
      this.#warmup = { bytesDone: 0, source: 'disk' };
      return;
    }
    this.#warmup.source = readiness.source;
    this.#warmup.finishedAt = this.isoNow();
    // A snapshot that restored means any earlier fallback reason no longer applies.
    if (readiness.source === 'snapshot') this.#warmup.error = undefined;
    // The warm-up talked to upstream even when its fetch failed: no ref check is due yet.
    this.#lastUpstreamCheckAt = this.#clock.now();
    const { fetched } = readiness;
    this.recordFetch(fetched.ok ? { ok: true, head: readiness.head } : fetched);
  }

  /** The warm-up failed for good (its clone fallback too); a mirror that was serving goes on serving. */
  warmupFailed(error: string): void {
    const life = this.#lifecycle;
    if (life.kind !== 'warming') return;
    this.#lifecycle = { kind: 'failed', serving: life.serving };
    this.#warmup.error = error;
    this.#warmup.finishedAt = this.isoNow();
  }

  // --- freshness ---------------------------------------------------------------------------

  /** The one place a fetch's outcome is recorded, whether periodic, on demand or a warm-up's catch-up. */
  recordFetch(result: FetchResult): void {
    if (!result.ok) {
      this.#lastFetchError = result.error;
      return;
    }
    this.#lastFetchAt = this.#clock.now();
    this.#lastUpstreamCheckAt = this.#lastFetchAt;
    this.#lastFetchError = undefined;
    this.#head = result.head;
    this.#fleet.lastFetchSource = result.source ?? 'upstream';
    if (result.source === 'writer') delete this.#fleet.writerError;
  }

  /** Upstream's refs are being compared with ours now: the next check is due an interval from now. */
  upstreamChecked(): void {
    this.#lastUpstreamCheckAt = this.#clock.now();
  }

  // --- fleet -------------------------------------------------------------------------------

  /** The fleet's writer could not serve a fetch (it goes to upstream instead); true when that is news. */
  writerFailed(error: string): boolean {
    const news = this.#fleet.writerError === undefined;
    this.#fleet.writerError = error;
    return news;
  }

  /**
   * Whether this replica may serve the rest of the fleet in upstream's place: it is the writer,
   * it serves, and it is not failing to fetch for longer than two of its intervals (then its
   * followers go to upstream themselves, so freshness never stops on one replica's trouble).
   */
  servesFleet(): { ok: true } | { ok: false; reason: string } {
    if (!this.#settings.snapshot.writer)
      return { ok: false, reason: `this replica is not ${this.id}'s writer` };
    if (!this.ready) return { ok: false, reason: `${this.id} is not ready` };
    const staleness = this.stalenessSeconds() ?? 0;
    if (this.#lastFetchError && staleness * 1000 > 2 * this.#settings.fetchIntervalMs)
      return {
        ok: false,
        reason: `${this.id} has not fetched from upstream for ${Math.round(staleness)} s: ${this.#lastFetchError}`,
      };
    return { ok: true };
  }

  fleetStatus(): MirrorFleetStatus {
    const { writer, followers = [] } = this.#settings.fleet;
    if (writer) return { role: 'follower', writer, ...this.#fleet };
    if (followers.length > 0) return { role: 'writer', followers: followers.length, ...this.#fleet };
    return { role: 'alone', ...this.#fleet };
  }

  // --- snapshots ---------------------------------------------------------------------------

  snapshotStarted(): void {
    this.#snapshot = { ...this.#snapshot, running: true, lastAttemptAt: this.isoNow() };
  }

  snapshotFinished(outcome: SnapshotResult): void {
    const running = false;
    if (!outcome.ok) {
      this.#snapshot = { ...this.#snapshot, running, lastResult: 'failed', lastError: outcome.error };
      return;
    }
    this.#snapshot = { ...this.#snapshot, running, lastResult: outcome.result, lastError: undefined };
    this.sawSnapshot(outcome.latest);
  }

  /** The newest snapshot in the store, as just seen (restored, published or listed). */
  sawSnapshot(latest: SnapshotRef): void {
    const { key, commit, createdAt, sizeBytes } = latest;
    this.#latestSnapshot = { key, commit, createdAt, sizeBytes };
  }

  // --- LFS prefetch ------------------------------------------------------------------------

  /** Whether the last LFS prefetch covered `refs` (a digest of scope and refs) without a failure. */
  lfsPrefetchCovers(refs: string): boolean {
    const last = this.#lfsPrefetch;
    return last?.covered === refs && last.failed === 0 && last.error === undefined;
  }

  /** An LFS prefetch of `covered` finished with these counts. */
  lfsPrefetched(covered: string, result: Omit<LfsPrefetchStatus, 'finishedAt'>): void {
    this.#lfsPrefetch = { ...result, finishedAt: this.isoNow(), covered };
  }

  // --- serving and removal -----------------------------------------------------------------

  serveStarted(): void {
    this.#activeServes++;
    this.served();
  }

  /** A client was served from local data (refs or a pack): on-demand mirrors are evicted by this. */
  served(): void {
    this.#disk.lastServedAt = this.#clock.now();
  }

  get lastServedAt(): number | undefined {
    return this.#disk.lastServedAt;
  }

  // --- disk --------------------------------------------------------------------------------

  /** Bytes on disk as last measured (after a warm-up, fetch or repack). */
  get diskBytes(): number | undefined {
    return this.#disk.bytes;
  }

  measured(bytes: number): void {
    this.#disk.bytes = bytes;
  }

  /** Its warm-up was refused for lack of space; shown in status until a warm-up succeeds. */
  cannotHold(shortfall: StorageShortfall): void {
    this.#disk.shortfall = shortfall;
  }

  serveFinished(): void {
    this.#activeServes--;
  }

  /**
   * Final: the mirror is no longer held. Warm-up steps reported after this (by a job that was
   * already running) change nothing, like any warm-up step reported outside a warm-up.
   */
  remove(): void {
    this.#lifecycle = { kind: 'removed' };
  }

  gitContext(git: MirrorGitContext['git']): MirrorGitContext {
    const { dir, upstream, id: mirrorId } = this;
    return { git, dir, upstream, credentials: this.#settings.credentials, gate: this.#gate, mirrorId };
  }

  status(): MirrorStatus {
    const { snapshot } = this.#settings;
    const staleness = this.stalenessSeconds();
    return {
      id: this.id,
      url: this.upstream,
      state: this.state,
      ready: this.ready,
      access: this.#settings.access,
      origin: this.#origin,
      specDigest: this.#specDigest,
      fetchIntervalSeconds: this.#settings.fetchIntervalMs / 1000,
      head: this.#head,
      lastFetchTime: this.#lastFetchAt ? new Date(this.#lastFetchAt).toISOString() : undefined,
      lastFetchError: this.#lastFetchError,
      stalenessSeconds: staleness === undefined ? undefined : Math.round(staleness),
      restore: this.restore,
      snapshot: {
        ...this.#snapshot,
        writer: snapshot.writer,
        intervalSeconds: snapshot.intervalMs ? snapshot.intervalMs / 1000 : undefined,
        retain: snapshot.retain,
      },
      latestSnapshot: this.#latestSnapshot,
      lfs: { prefetch: this.#settings.lfs.prefetch, lastPrefetch: this.lastLfsPrefetch() },
      disk: {
        bytes: this.#disk.bytes,
        lastServedTime: this.#disk.lastServedAt ? new Date(this.#disk.lastServedAt).toISOString() : undefined,
        shortfall: this.#disk.shortfall,
      },
      fleet: this.fleetStatus(),
    };
  }

  private restorePhase(): RestorePhase {
    const life = this.#lifecycle;
    switch (life.kind) {
      case 'warming':
        return life.phase;
      case 'ready':
        return 'done';
      case 'failed':
        return 'failed';
      default:
        return 'idle';
    }
  }

  /** Moves a running warm-up to `phase`; returns false (and changes nothing) when none runs. */
  private toPhase(phase: WarmupPhase): boolean {
    const life = this.#lifecycle;
    if (life.kind !== 'warming') return false;
    this.#lifecycle = { ...life, phase };
    return true;
  }

  private lastLfsPrefetch(): LfsPrefetchStatus | undefined {
    if (!this.#lfsPrefetch) return undefined;
    const { covered: _, ...status } = this.#lfsPrefetch;
    return status;
  }

  private isoNow(): string {
    return new Date(this.#clock.now()).toISOString();
  }
}
