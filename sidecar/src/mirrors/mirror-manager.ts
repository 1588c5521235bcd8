import { EventEmitter } from 'node:events';
import { rename, rm } from 'node:fs/promises';
import type { Access, MirrorSpec, OnDemandRefusal, OnDemandStatus } from '../../../core/admin-api.ts';
import { withUsername } from '../../../core/credentials.ts';
import type { Logger } from '../../../core/log.ts';
import { parseRepoId, type RepoId, repoIdFromUrl, upstreamUrl } from '../../../core/repo-id.ts';
import { snapshotRetain } from '../../../core/snapshot.ts';
import { mirrorSpecDigest } from '../../../core/spec-digest.ts';
import type { SidecarConfig } from '../config/sidecar-config.ts';
import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import type { CredentialsFile } from '../git/credentials.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { JobScheduler } from '../jobs/job-scheduler.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { SnapshotService } from '../snapshot/snapshot-service.ts';
import type { DataLayout } from './data-layout.ts';
import {
  fetchMirror,
  headCommit,
  localRefs,
  repackMirror,
  sameRefs,
  upstreamRefs,
} from './git-mirror-ops.ts';
import { Mirror, type MirrorOrigin, type MirrorSettings } from './mirror.ts';
import { publishMirrorSnapshot } from './mirror-snapshot.ts';
import { restoreOrClone, type WarmupDeps } from './mirror-warmup.ts';
import { OnDemandGate } from './on-demand.ts';
import { PeriodicTimers } from './periodic-timers.ts';
import { sweepStaleLocks } from './stale-locks.ts';

export interface MirrorManagerDeps {
  config: SidecarConfig;
  git: GitRunner;
  layout: DataLayout;
  scheduler: JobScheduler;
  snapshots?: SnapshotService;
  credentials: CredentialsFile;
  logger: Logger;
  metrics: SidecarMetrics;
}

/**
 * The set of mirrors this sidecar holds and everything that happens to them: creation,
 * warm-up, fetches (periodic, on demand, on stale refs), repacks, snapshots, removal.
 * Emits `ready` (mirror) when a mirror starts serving locally.
 */
export class MirrorManager extends EventEmitter<{ ready: [Mirror] }> {
  private readonly deps: MirrorManagerDeps;
  private readonly mirrors = new Map<string, Mirror>();
  private readonly timers: PeriodicTimers;
  private readonly onDemand: OnDemandGate;

  constructor(deps: MirrorManagerDeps) {
    super();
    this.deps = deps;
    this.timers = new PeriodicTimers(deps.logger);
    this.onDemand = new OnDemandGate(deps.config.maxOnDemandMirrors, deps.logger, deps.metrics);
  }

  get(id: string): Mirror | undefined {
    return this.mirrors.get(id);
  }

  list(): Mirror[] {
    return [...this.mirrors.values()];
  }

  /**
   * Loads mirrors left on disk by a previous run: they are complete (installed by rename).
   * They count against GITMIRROR_MAX_ON_DEMAND_MIRRORS until configured, and are kept and
   * served even beyond it (the bound only stops new ones).
   */
  async discoverExisting(): Promise<void> {
    for (const raw of await this.deps.layout.discover()) {
      let repo: RepoId;
      try {
        repo = parseRepoId(raw);
      } catch {
        continue;
      }
      const mirror = this.create(
        repo,
        this.defaultSettings(upstreamUrl(repo, this.deps.config.httpHosts)),
        undefined,
        'disk',
      );
      await sweepStaleLocks(mirror.dir);
      mirror.state = 'ready';
      mirror.restore = { phase: 'done', source: 'disk', bytesDone: 0 };
      mirror.head = await headCommit(mirror.gitContext(this.deps.git));
      this.emit('ready', mirror);
      void this.fetch(mirror, { lowSpeedAbort: false }).catch(() => {});
    }
  }

  /**
   * A client was just shown this repository by upstream (info/refs answered 200 with a git
   * advertisement): the mirror for it, created empty (not yet warmed) if the on-demand rules
   * allow; undefined, counted and logged, if they do not.
   */
  createOnDemand(repo: RepoId): Mirror | undefined {
    const existing = this.mirrors.get(repo.id);
    if (existing) return existing;
    const count = this.onDemandCount();
    const refusal = this.onDemand.check(repo.id, count);
    if (refusal) {
      this.onDemand.refuse(repo.id, refusal, count);
      return undefined;
    }
    return this.create(
      repo,
      this.defaultSettings(upstreamUrl(repo, this.deps.config.httpHosts)),
      undefined,
      'on-demand',
    );
  }

  /** A request for a repository without a mirror created none, because of upstream's answer. */
  refuseOnDemand(repo: RepoId, reason: OnDemandRefusal): void {
    this.onDemand.refuse(repo.id, reason, this.onDemandCount());
  }

  /** Mirrors counting against GITMIRROR_MAX_ON_DEMAND_MIRRORS: all but the configured ones. */
  onDemandCount(): number {
    let count = 0;
    for (const mirror of this.mirrors.values()) if (mirror.origin !== 'configured') count++;
    return count;
  }

  onDemandStatus(): OnDemandStatus {
    return this.onDemand.status(this.onDemandCount());
  }

  /** A mirror named by its upstream URL (GITMIRROR_MIRRORS): that URL is used as given. */
  adopt(url: string): Mirror {
    const repo = repoIdFromUrl(url);
    const existing = this.mirrors.get(repo.id);
    if (existing) existing.origin = 'configured';
    return existing ?? this.create(repo, this.defaultSettings(url), url);
  }

  /** Applies a desired config from the admin API; returns whether the mirror was created. */
  applySpec(repo: RepoId, spec: MirrorSpec): { mirror: Mirror; created: boolean } {
    const urlRepo = repoIdFromUrl(spec.url);
    if (urlRepo.id !== repo.id) {
      throw new GitMirrorError('BAD_REQUEST', `url names ${urlRepo.id}, not ${repo.id}`);
    }
    const settings = this.settingsFromSpec(spec);
    const existing = this.mirrors.get(repo.id);
    const mirror = existing ?? this.create(repo, settings, spec.url);
    mirror.specDigest = mirrorSpecDigest(spec);
    if (!existing) return { mirror, created: true };
    existing.origin = 'configured';
    const demoted = existing.settings.snapshot.writer && !settings.snapshot.writer;
    existing.settings = settings;
    // A replica that lost the writer role must not finish a snapshot the new writer is also taking.
    if (demoted) this.deps.scheduler.cancel(existing.id, 'snapshot');
    this.scheduleTimers(existing);
    return { mirror, created: false };
  }

  /** Restores or clones the mirror. Joins a warm-up already under way; a ready mirror is left alone unless forced. */
  warm(mirror: Mirror, options: { key?: string; force?: boolean } = {}): Promise<void> {
    if (mirror.warming) return mirror.warming;
    if (mirror.ready && !options.force) return Promise.resolve();
    const deps: WarmupDeps = { ...this.deps, cloneTimeoutMs: this.deps.config.cloneTimeoutMs };
    const job = this.deps.scheduler.submit({
      mirrorId: mirror.id,
      kind: 'restore',
      run: (signal) => restoreOrClone(deps, mirror, options.key, signal),
    });
    mirror.warming = job.then(
      () => {
        mirror.warming = undefined;
        mirror.warmupFailures = 0;
        this.onDemand.warmupSucceeded(mirror.id);
        this.afterWarm(mirror);
      },
      (err: unknown) => {
        mirror.warming = undefined;
        mirror.warmupFailures++;
        mirror.lastWarmupFailureAt = Date.now();
        this.dropFailedOnDemand(mirror);
        throw err;
      },
    );
    mirror.warming.catch(() => {});
    return mirror.warming;
  }

  /**
   * An on-demand mirror whose first warm-up failed (say a private repository this cache has
   * no credentials for) holds nothing on disk: it is forgotten rather than kept as a failed
   * entry that would take a place under the bound, and the gate makes requests wait before
   * creating it again, as a failed mirror would.
   */
  private dropFailedOnDemand(mirror: Mirror): void {
    if (mirror.origin !== 'on-demand' || mirror.ready || this.mirrors.get(mirror.id) !== mirror) return;
    this.mirrors.delete(mirror.id);
    mirror.removed = true;
    this.onDemand.warmupFailed(mirror.id, mirror.lastWarmupFailureAt);
    this.deps.logger.info(
      { mirror: mirror.id, err: mirror.restore.error },
      'on-demand mirror failed to warm up; forgotten, requests go to upstream',
    );
  }

  private afterWarm(mirror: Mirror): void {
    this.deps.logger.info(
      { mirror: mirror.id, source: mirror.restore.source, head: mirror.head },
      'mirror ready',
    );
    this.emit('ready', mirror);
    this.scheduleTimers(mirror);
    // A fresh clone has one pack and no bitmap; repack now so clones count objects fast.
    if (mirror.restore.source === 'clone') void this.repack(mirror).catch(() => {});
  }

  /** Single-flight through the scheduler: a fetch already queued for this mirror is joined. */
  fetch(mirror: Mirror, options: { lowSpeedAbort?: boolean } = {}): Promise<void> {
    return this.deps.scheduler.submit({
      mirrorId: mirror.id,
      kind: 'fetch',
      run: (signal) => this.runFetch(mirror, signal, options.lowSpeedAbort ?? true),
    });
  }

  private async runFetch(mirror: Mirror, signal: AbortSignal, lowSpeedAbort: boolean): Promise<void> {
    if (!mirror.ready) throw new GitMirrorError('MIRROR_NOT_READY', `${mirror.id} is not ready to fetch`);
    const ctx = mirror.gitContext(this.deps.git);
    try {
      await fetchMirror(ctx, { timeoutMs: this.deps.config.fetchTimeoutMs, signal, lowSpeedAbort });
      mirror.lastFetchAt = Date.now();
      mirror.lastUpstreamCheckAt = mirror.lastFetchAt;
      mirror.lastFetchOk = true;
      mirror.lastFetchError = undefined;
      mirror.head = await headCommit(ctx);
    } catch (err) {
      mirror.lastFetchOk = false;
      mirror.lastFetchError = describeError(err);
      this.deps.logger.warn({ mirror: mirror.id, err: mirror.lastFetchError }, 'fetch failed');
      throw err;
    }
  }

  /**
   * Called when a client asks for refs. At most once per ref-check interval per mirror it
   * compares upstream's refs with ours; if they differ it fetches and waits (bounded) so the
   * client sees upstream's new commits now rather than at the next periodic fetch.
   */
  async ensureFresh(mirror: Mirror): Promise<void> {
    if (!mirror.ready) return;
    if (
      Date.now() - mirror.lastUpstreamCheckAt < this.deps.config.refCheckIntervalMs &&
      !mirror.freshnessCheck
    )
      return;
    mirror.freshnessCheck ??= this.checkFreshness(mirror).finally(() => {
      mirror.freshnessCheck = undefined;
    });
    await mirror.freshnessCheck;
  }

  private async checkFreshness(mirror: Mirror): Promise<void> {
    mirror.lastUpstreamCheckAt = Date.now();
    const ctx = mirror.gitContext(this.deps.git);
    try {
      const [upstream, local] = await Promise.all([upstreamRefs(ctx, 30_000), localRefs(ctx)]);
      if (sameRefs(upstream, local)) return;
      const fetched = this.fetch(mirror);
      await Promise.race([
        fetched,
        new Promise((r) => setTimeout(r, this.deps.config.freshnessWaitMs).unref()),
      ]);
    } catch (err) {
      // Upstream unreachable: serve what we have; staleness shows in status and metrics.
      this.deps.logger.debug({ mirror: mirror.id, err: describeError(err) }, 'freshness check failed');
    }
  }

  repack(mirror: Mirror): Promise<void> {
    return this.deps.scheduler.submit({
      mirrorId: mirror.id,
      kind: 'repack',
      run: (signal) => repackMirror(mirror.gitContext(this.deps.git), 60 * 60_000, signal),
    });
  }

  /** Fetch, then publish a snapshot (skipped when refs are unchanged since the last one). */
  snapshot(mirror: Mirror) {
    const { snapshots } = this.deps;
    if (!snapshots)
      return Promise.reject(new GitMirrorError('CONFIG_INVALID', 'no snapshot store configured'));
    return this.deps.scheduler.submit({
      mirrorId: mirror.id,
      kind: 'snapshot',
      run: (signal) =>
        publishMirrorSnapshot({ ...this.deps, snapshots }, mirror, signal, (s) =>
          this.runFetch(mirror, s, true),
        ),
    });
  }

  /** Refreshes `latestSnapshot` from the store (for status), without failing on store errors. */
  async refreshLatestSnapshot(mirror: Mirror): Promise<void> {
    const manifest = await this.deps.snapshots?.latest(mirror.repo).catch(() => undefined);
    if (manifest) {
      mirror.latestSnapshot = {
        key: manifest.key,
        commit: manifest.commit,
        createdAt: manifest.createdAt,
        sizeBytes: manifest.sizeBytes,
      };
    }
  }

  async remove(mirror: Mirror): Promise<void> {
    mirror.removed = true;
    this.mirrors.delete(mirror.id);
    this.timers.clear(mirror.id);
    this.deps.scheduler.cancel(mirror.id);
    // Rename first so the mirror vanishes atomically, then delete at leisure.
    const doomed = this.deps.layout.retiredName(mirror.repo).replace('/retired-', '/removed-');
    await rename(mirror.dir, doomed).catch(() => {});
    await rm(doomed, { recursive: true, force: true });
  }

  stop(): void {
    this.timers.clearAll();
  }

  private create(
    repo: RepoId,
    settings: MirrorSettings,
    url?: string,
    origin: MirrorOrigin = 'configured',
  ): Mirror {
    const upstream = url ? url.replace(/\/+$/, '') : upstreamUrl(repo, this.deps.config.httpHosts);
    const mirror = new Mirror(repo, upstream, this.deps.layout.mirrorDir(repo), settings, origin);
    this.mirrors.set(repo.id, mirror);
    return mirror;
  }

  defaultSettings(upstream: string): MirrorSettings {
    const credentials = this.deps.credentials.lookup(upstream);
    const { config } = this.deps;
    return {
      fetchIntervalMs: config.fetchIntervalMs,
      snapshot: {
        writer: config.snapshotIntervalMs !== undefined,
        intervalMs: config.snapshotIntervalMs,
        retain: config.snapshotRetain,
      },
      access: credentials ? 'Private' : 'Public',
      credentials,
    };
  }

  private settingsFromSpec(spec: MirrorSpec): MirrorSettings {
    const credentials = spec.credentials
      ? withUsername(spec.credentials)
      : this.deps.credentials.lookup(spec.url);
    const access: Access = spec.access ?? (credentials ? 'Private' : 'Public');
    const interval = spec.snapshot?.intervalSeconds;
    return {
      fetchIntervalMs: (spec.fetchIntervalSeconds ?? this.deps.config.fetchIntervalMs / 1000) * 1000,
      snapshot: {
        writer: spec.snapshot?.writer ?? false,
        intervalMs: interval ? interval * 1000 : this.deps.config.snapshotIntervalMs,
        retain: snapshotRetain(spec.snapshot?.retain ?? this.deps.config.snapshotRetain),
      },
      access,
      credentials,
    };
  }

  /** (Re)arms the periodic fetch, repack and — on the writer — snapshot of a ready mirror. */
  private scheduleTimers(mirror: Mirror): void {
    this.timers.clear(mirror.id);
    if (!mirror.ready || mirror.removed) return;
    const swallow = () => {};
    this.timers.every(mirror.id, 'fetch', mirror.settings.fetchIntervalMs, () =>
      this.fetch(mirror).catch(swallow),
    );
    this.timers.every(mirror.id, 'repack', this.deps.config.repackIntervalMs, () =>
      this.repack(mirror).catch(swallow),
    );
    const { writer, intervalMs } = mirror.settings.snapshot;
    if (writer && intervalMs && this.deps.snapshots) {
      // Store outages are usually short: retry 30s, 1m, 2m, 4m, 8m, then wait for the interval.
      this.timers.every(mirror.id, 'snapshot', intervalMs, () => this.snapshot(mirror), {
        runSoon: true,
        retry: { attempts: 5, baseMs: this.deps.config.snapshotRetryBaseMs },
      });
    }
  }
}
