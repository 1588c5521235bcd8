import { EventEmitter } from 'node:events';
import { rename, rm } from 'node:fs/promises';
import type { Access, MirrorSpec, OnDemandRefusal, OnDemandStatus } from '../../../core/admin-api.ts';
import type { Clock } from '../../../core/clock.ts';
import { withUsername } from '../../../core/credentials.ts';
import type { Logger } from '../../../core/log.ts';
import { parseRepoId, type RepoId, repoIdFromUrl, upstreamUrl } from '../../../core/repo-id.ts';
import { snapshotRetain } from '../../../core/snapshot.ts';
import { mirrorSpecDigest } from '../../../core/spec-digest.ts';
import type { DiskBudget } from '../budget/disk-budget.ts';
import type { SidecarConfig } from '../config/sidecar-config.ts';
import { describeError, GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import {
  type CredentialSource,
  type Credentials,
  type CredentialsFile,
  HeldCredentials,
} from '../git/credentials.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { JobScheduler } from '../jobs/job-scheduler.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { SnapshotService } from '../snapshot/snapshot-service.ts';
import type { UpstreamHosts } from '../upstream/host-gate.ts';
import type { DataLayout } from './data-layout.ts';
import type { FleetLinks } from './fleet-links.ts';
import { fetchMirror, headCommit, refsDigest, repackMirror } from './git-mirror-ops.ts';
import { type FetchSource, Mirror, type MirrorOrigin, type MirrorSettings } from './mirror.ts';
import { publishMirrorSnapshot } from './mirror-snapshot.ts';
import { MirrorStorage } from './mirror-storage.ts';
import { restoreOrClone, type WarmupDeps } from './mirror-warmup.ts';
import { OnDemandGate } from './on-demand.ts';
import { PeriodicTimers } from './periodic-timers.ts';
import { sweepStaleLocks } from './stale-locks.ts';
import { WarmupBackoff } from './warmup-backoff.ts';

export interface MirrorManagerDeps {
  config: SidecarConfig;
  git: GitRunner;
  layout: DataLayout;
  scheduler: JobScheduler;
  snapshots?: SnapshotService;
  credentials: CredentialsFile;
  /** Standalone: a GitHub App's tokens, for mirrors of its git host the credentials file has nothing for. */
  githubApp?: { gitHost: string; credentials: CredentialSource };
  logger: Logger;
  metrics: SidecarMetrics;
  clock: Clock;
  /** The data budget the mirrors live in; without one nothing is reserved, measured or evicted. */
  budget?: DiskBudget;
  /** The upstream hosts' gates; without them git asks upstream whenever it needs to. */
  upstream?: UpstreamHosts;
  /** Fetching from the fleet's writer, and telling its followers; without it every fetch asks upstream. */
  fleet?: FleetLinks;
}

/** How a fetch runs; the scheduler joins a fetch already queued, whatever it was asked with. */
export interface FetchRequest {
  /** Abort a transfer that crawls (off for the catch-up of a mirror found on disk). */
  lowSpeedAbort?: boolean;
  /**
   * Someone wants upstream's latest (a client, the admin API, the writer's word): a follower
   * asks the writer to compare with upstream first. The periodic fetch does not.
   */
  checkUpstream?: boolean;
}

/**
 * The set of mirrors this sidecar holds and everything that happens to them: creation,
 * warm-up, fetches (periodic, on demand, on stale refs), repacks, snapshots, removal.
 * Emits `ready` (mirror) when a mirror starts serving locally (after a warm-up's catch-up
 * fetch), `fetched` (mirror) after each later successful fetch, and `removed` (mirror) when
 * it is no longer held, before its directory goes.
 */
export class MirrorManager extends EventEmitter<{ ready: [Mirror]; fetched: [Mirror]; removed: [Mirror] }> {
  private readonly deps: MirrorManagerDeps;
  private readonly mirrors = new Map<string, Mirror>();
  private readonly timers: PeriodicTimers;
  private readonly onDemand: OnDemandGate;
  private readonly backoff: WarmupBackoff;
  /** Single-flight warm-ups: a request for one under way joins it. */
  private readonly warmups = new WeakMap<Mirror, Promise<void>>();
  private readonly storage?: MirrorStorage;

  constructor(deps: MirrorManagerDeps) {
    super();
    this.deps = deps;
    if (deps.budget)
      this.storage = new MirrorStorage({
        budget: deps.budget,
        mirrors: () => this.mirrors.values(),
        busy: (mirror) => this.warmups.has(mirror) || deps.scheduler.running(mirror.id) !== undefined,
        remove: (id) => this.evict(id),
      });
    this.timers = new PeriodicTimers(deps.logger);
    this.backoff = new WarmupBackoff(deps.clock);
    this.onDemand = new OnDemandGate({
      limit: deps.config.maxOnDemandMirrors,
      logger: deps.logger,
      metrics: deps.metrics,
      clock: deps.clock,
      backoff: this.backoff,
    });
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
      mirror.readyFrom({ source: 'disk', head: await headCommit(mirror.gitContext(this.deps.git)) });
      await this.storage?.measure(mirror);
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
    existing?.markConfigured();
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
    const { demoted, rescheduled } = mirror.applySpec(settings, mirrorSpecDigest(spec));
    if (!existing) return { mirror, created: true };
    // A replica that lost the writer role must not finish a snapshot the new writer is also taking.
    if (demoted) this.deps.scheduler.cancel(existing.id, 'snapshot');
    if (rescheduled) this.scheduleTimers(existing);
    return { mirror, created: false };
  }

  /** Restores or clones the mirror. Joins a warm-up already under way; a ready mirror is left alone unless forced. */
  warm(mirror: Mirror, options: { key?: string; force?: boolean } = {}): Promise<void> {
    const running = this.warmups.get(mirror);
    if (running) return running;
    if (mirror.ready && !options.force) return Promise.resolve();
    const deps: WarmupDeps = {
      ...this.deps,
      cloneTimeoutMs: this.deps.config.cloneTimeoutMs,
      storage: this.storage,
    };
    const job = this.deps.scheduler.submit({
      mirrorId: mirror.id,
      kind: 'restore',
      run: (signal) => restoreOrClone(deps, mirror, options.key, signal),
    });
    const warming = job.then(
      () => {
        this.warmups.delete(mirror);
        this.backoff.forget(mirror.id);
        this.afterWarm(mirror);
      },
      (err: unknown) => {
        this.warmups.delete(mirror);
        // A removed mirror's cancelled warm-up is no reason to hold back a new one.
        if (this.holds(mirror)) this.backoff.failed(mirror.id);
        this.dropFailedOnDemand(mirror);
        throw err;
      },
    );
    warming.catch(() => {});
    this.warmups.set(mirror, warming);
    return warming;
  }

  /**
   * A client request found the mirror cold: warm it up, unless its last warm-up failed so
   * recently that the retry policy says to wait (5 s, doubling, up to 5 min).
   */
  warmIfAllowed(mirror: Mirror): void {
    if (mirror.ready || !this.backoff.allows(mirror.id)) return;
    void this.warm(mirror).catch(() => {});
  }

  /**
   * An on-demand mirror whose first warm-up failed (say a private repository this cache has
   * no credentials for) holds nothing on disk: it is forgotten rather than kept as a failed
   * entry that would take a place under the bound. The warm-up backoff outlives it, so the
   * gate makes requests wait before creating it again, as a failed mirror would.
   */
  private dropFailedOnDemand(mirror: Mirror): void {
    if (mirror.origin !== 'on-demand' || mirror.ready || !this.holds(mirror)) return;
    this.mirrors.delete(mirror.id);
    mirror.remove();
    this.deps.logger.info(
      { mirror: mirror.id, err: mirror.restore.error },
      'on-demand mirror failed to warm up; forgotten, requests go to upstream',
    );
  }

  private afterWarm(mirror: Mirror): void {
    if (!mirror.ready) return; // removed while it warmed up
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
  fetch(mirror: Mirror, request: FetchRequest = {}): Promise<void> {
    return this.deps.scheduler.submit({
      mirrorId: mirror.id,
      kind: 'fetch',
      run: (signal) => this.runFetch(mirror, signal, request),
    });
  }

  /**
   * A follower fetches from its fleet's writer, and from upstream only when the writer cannot
   * serve; the writer (and a lone replica) from upstream. A writer whose fetch moved refs tells
   * its followers.
   */
  private async runFetch(mirror: Mirror, signal: AbortSignal, request: FetchRequest): Promise<void> {
    if (!mirror.ready) throw new GitMirrorError('MIRROR_NOT_READY', `${mirror.id} is not ready to fetch`);
    const ctx = mirror.gitContext(this.deps.git);
    const { fleet } = this.deps;
    const tells = fleet !== undefined && (mirror.settings.fleet.followers?.length ?? 0) > 0;
    const before = tells ? await refsDigest(ctx).catch(() => undefined) : undefined;
    try {
      let source: FetchSource = 'upstream';
      await this.withinBudget(mirror, 'fetch', signal, async (s) => {
        const options = {
          timeoutMs: this.deps.config.fetchTimeoutMs,
          signal: s,
          lowSpeedAbort: request.lowSpeedAbort ?? true,
        };
        const checkUpstream = request.checkUpstream ?? false;
        const viaWriter = await fleet?.viaWriter(mirror, 'fetch', { checkUpstream, signal: s }, (writer) =>
          fetchMirror(writer, options),
        );
        if (viaWriter) source = 'writer';
        else await fetchMirror(ctx, options);
      });
      mirror.recordFetch({ ok: true, head: await headCommit(ctx), source });
    } catch (err) {
      const error = describeError(err);
      mirror.recordFetch({ ok: false, error });
      // A throttled host is already logged once by its gate, not once per mirror.
      if (!isGitMirrorError(err, 'UPSTREAM_THROTTLED'))
        this.deps.logger.warn({ mirror: mirror.id, err: error }, 'fetch failed');
      throw err;
    }
    this.emit('fetched', mirror);
    if (tells && (await refsDigest(ctx).catch(() => undefined)) !== before) fleet?.notifyFollowers(mirror);
  }

  repack(mirror: Mirror): Promise<void> {
    return this.deps.scheduler.submit({
      mirrorId: mirror.id,
      kind: 'repack',
      run: (signal) =>
        this.withinBudget(mirror, 'repack', signal, (s) =>
          repackMirror(mirror.gitContext(this.deps.git), 60 * 60_000, s),
        ),
    });
  }

  /** A fetch or repack within the disk budget, when there is one (see MirrorStorage.within). */
  private withinBudget(
    mirror: Mirror,
    kind: 'fetch' | 'repack',
    signal: AbortSignal,
    work: (signal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    return this.storage ? this.storage.within(mirror, kind, signal, work) : work(signal);
  }

  /** Evicted by the disk budget to make room: an on-demand mirror nobody uses, removed as by DELETE. */
  private async evict(id: string): Promise<void> {
    const mirror = this.mirrors.get(id);
    if (!mirror) return;
    this.deps.logger.info(
      { mirror: id, bytes: mirror.diskBytes, lastServedTime: mirror.status().disk?.lastServedTime },
      'evicting an on-demand mirror to make room',
    );
    await this.remove(mirror);
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
          this.runFetch(mirror, s, {}),
        ),
    });
  }

  /** Refreshes `latestSnapshot` from the store (for status), without failing on store errors. */
  async refreshLatestSnapshot(mirror: Mirror): Promise<void> {
    const manifest = await this.deps.snapshots?.latest(mirror.repo).catch(() => undefined);
    if (manifest) mirror.sawSnapshot(manifest);
  }

  async remove(mirror: Mirror): Promise<void> {
    mirror.remove();
    this.mirrors.delete(mirror.id);
    this.backoff.forget(mirror.id);
    this.timers.clear(mirror.id);
    this.deps.scheduler.cancel(mirror.id);
    this.emit('removed', mirror);
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
    const dir = this.deps.layout.mirrorDir(repo);
    const gate = this.deps.upstream?.gate(upstream);
    const mirror = new Mirror({ repo, upstream, dir, settings, origin, clock: this.deps.clock, gate });
    this.mirrors.set(repo.id, mirror);
    return mirror;
  }

  /** Whether `mirror` is the one held under its id (not removed, nor replaced since). */
  private holds(mirror: Mirror): boolean {
    return this.mirrors.get(mirror.id) === mirror;
  }

  defaultSettings(upstream: string): MirrorSettings {
    const credentials = this.fileCredentials(upstream);
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
      lfs: { prefetch: config.lfsPrefetch },
      fleet: {},
    };
  }

  /**
   * Credentials the sidecar has for an upstream by itself: the credentials file's (longest
   * path match), else the GitHub App's tokens when the upstream is on the App's host.
   */
  private fileCredentials(upstream: string): CredentialSource | undefined {
    const found = this.deps.credentials.lookup(upstream);
    if (found) return this.held(found);
    const app = this.deps.githubApp;
    return app && new URL(upstream).host.toLowerCase() === app.gitHost ? app.credentials : undefined;
  }

  private held(credentials: Credentials, expiresAt?: number): CredentialSource {
    const { clock, config } = this.deps;
    return new HeldCredentials(credentials, { expiresAt, clock, requestBoundMs: config.fetchTimeoutMs });
  }

  /** Credentials a PUT hands over; a token's expiry comes with it (admin-input checked the date). */
  private fromSpec(given: NonNullable<MirrorSpec['credentials']>): CredentialSource {
    const { username, password } = withUsername(given);
    return this.held({ username, password }, given.expiresAt ? Date.parse(given.expiresAt) : undefined);
  }

  private settingsFromSpec(spec: MirrorSpec): MirrorSettings {
    const credentials = spec.credentials ? this.fromSpec(spec.credentials) : this.fileCredentials(spec.url);
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
      lfs: { prefetch: spec.lfs?.prefetch ?? 'None' },
      fleet: spec.fleet ?? {},
    };
  }

  /** (Re)arms the periodic fetch, repack and — on the writer — snapshot of a ready mirror. */
  private scheduleTimers(mirror: Mirror): void {
    this.timers.clear(mirror.id);
    if (!mirror.ready) return; // a removed mirror is never ready
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
