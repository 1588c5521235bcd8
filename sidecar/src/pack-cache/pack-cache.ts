import { mkdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type Clock, systemClock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { ByteHolder, EvictedEntry, EvictionCandidate } from '../budget/byte-holder.ts';
import { planEviction } from '../budget/eviction-plan.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { FileSender } from './file-sender.ts';
import { Generation, type GenerationOutcome } from './generation.ts';
import { type LeaseRole, PackEntry, PackLease } from './pack-entry.ts';
import { type PackObjectsRequest, packKey } from './pack-request.ts';

export type EvictionReason = 'ttl' | 'budget' | 'mirror_removed';
/**
 * disabled: budget 0; budget: full; unsupported: an argument or input it does not take;
 * unavailable: no entry could be created; no_sideband: a client that does not read
 * side-band-64k packets, which the pack cannot be written into.
 */
export type BypassReason = 'disabled' | 'budget' | 'unsupported' | 'unavailable' | 'no_sideband';

/** What the cache reports as it works; the sidecar maps it to Prometheus metrics. */
export interface PackCacheObserver {
  lookup(result: LeaseRole | 'bypass', reason?: BypassReason): void;
  generation(outcome: GenerationOutcome, seconds: number, bytes: number): void;
  /** Bytes a reader passed on to its client, by how it got the pack. */
  served(role: LeaseRole, bytes: number): void;
  evicted(reason: EvictionReason, bytes: number): void;
}

export interface PackCacheOptions {
  /** Where entries live; emptied at start (an entry of an earlier run is never trusted). */
  dir: string;
  /** 0 turns the cache off: every request is bypassed. */
  maxBytes: number;
  /** How long a completed entry is served. */
  ttlMs: number;
  git: GitRunner;
  /** `git version` output: part of every key. */
  gitVersion: string;
  logger: Logger;
  /** Bound on one generation, like upload-pack's own. */
  generationTimeoutMs: number;
  observer?: PackCacheObserver;
  /** Time for TTLs and least-recently-used order [the system clock]. */
  clock?: Clock;
  /** Size sampling of running generations (default 20 ms). */
  pollMs?: number;
  /** Sends completed packs into responses without a copy through the sidecar (else they are copied). */
  fileSender?: FileSender;
}

export type Acquired = { lease: PackLease } | { bypass: BypassReason };

export interface PackCacheStats {
  maxBytes: number;
  ttlSeconds: number;
  /** Bytes on disk: completed entries, generations so far, and retired entries still being read. */
  bytesHeld: number;
  entries: number;
  generating: number;
  readers: number;
}

const NOOP_OBSERVER: PackCacheObserver = { lookup() {}, generation() {}, served() {}, evicted() {} };

/**
 * Identical pack-objects requests share one generation: the first starts `git pack-objects`
 * writing into a file, every request (the first included) reads that file as it grows, at
 * its own pace, and a completed file answers identical requests for `ttlMs`. Only a
 * completed entry is ever handed out as whole; a failed generation fails its readers and
 * its file is deleted at once. Bytes on disk stay within `maxBytes`: a new generation
 * starts only below it (least-recently-used idle entries are evicted first), and a
 * generation that grows past it is finished for its readers and then dropped. It is also
 * one of the data budget's holders: its idle entries are what it offers to give up.
 */
export class PackCache implements ByteHolder {
  readonly name = 'pack-cache';
  private readonly options: PackCacheOptions;
  private readonly observer: PackCacheObserver;
  private readonly now: () => number;
  private readonly index = new Map<string, PackEntry>();
  /** Out of the index, file still on disk for its readers. */
  private readonly retired = new Set<PackEntry>();
  private readonly generations = new Map<PackEntry, Generation>();
  private readonly expiry: NodeJS.Timeout;
  private sequence = 0;
  /** Bytes of every entry in `index` and `retired`, kept as entries grow and files go. */
  private held = 0;

  private constructor(options: PackCacheOptions) {
    this.options = options;
    this.observer = options.observer ?? NOOP_OBSERVER;
    const clock = options.clock ?? systemClock;
    this.now = () => clock.now();
    this.expiry = setInterval(() => this.expire(), Math.max(1_000, Math.min(options.ttlMs / 2, 30_000)));
    this.expiry.unref();
  }

  /** Sweeps the directory (nothing from an earlier process is served) and opens the cache. */
  static async open(options: PackCacheOptions): Promise<PackCache> {
    await rm(options.dir, { recursive: true, force: true });
    await mkdir(options.dir, { recursive: true, mode: 0o700 });
    return new PackCache(options);
  }

  get enabled(): boolean {
    return this.options.maxBytes > 0;
  }

  get fileSender(): FileSender | undefined {
    return this.options.fileSender;
  }

  /**
   * A lease on the pack for this request: a completed entry (hit), a generation in progress
   * (joined) or a new one (miss). Bypassed when the cache is off or full, or when the
   * entry's file could not be created. Resolves once the file exists, so a lease's path can
   * always be opened; an identical request arriving meanwhile joins the same entry.
   */
  async acquire(options: { repoId: string; dir: string; request: PackObjectsRequest }): Promise<Acquired> {
    if (!this.enabled) return this.bypass('disabled');
    const key = packKey({
      gitVersion: this.options.gitVersion,
      repoId: options.repoId,
      request: options.request,
    });
    const found = this.lookup(key);
    const role: LeaseRole = found ? (found.state === 'complete' ? 'hit' : 'joined') : 'miss';
    const entry = found ?? this.start(key, options);
    if (!entry) return this.bypass('budget');
    // Held from here: the entry is neither evicted nor abandoned while its file is created.
    entry.readers++;
    const generation = this.generations.get(entry);
    if (generation && !(await generation.created)) {
      this.release(entry, role, 0);
      return this.bypass('unavailable');
    }
    entry.lastUsedAt = this.now();
    this.observer.lookup(role);
    return { lease: new PackLease(entry, role, (served) => this.release(entry, role, served)) };
  }

  /** Counts a request that could not even be looked up (arguments the cache does not take). */
  noteBypass(reason: BypassReason): void {
    this.observer.lookup('bypass', reason);
  }

  /** Bytes on disk now, generations in progress and entries still being read included. */
  bytesHeld(): number {
    return this.held;
  }

  /**
   * Completed entries nobody reads, for the data budget: those past their TTL as `expired`,
   * the rest as `cache`. Entries being generated or read are never offered.
   */
  evictionCandidates(): EvictionCandidate[] {
    const now = this.now();
    const candidates: EvictionCandidate[] = [];
    for (const entry of this.index.values()) {
      if (!entry.idle) continue;
      const { key, bytes, lastUsedAt } = entry;
      candidates.push({
        key,
        bytes,
        lastUsedAt,
        tier: entry.expired(now, this.options.ttlMs) ? 'expired' : 'cache',
      });
    }
    return candidates;
  }

  /**
   * Evicts these entries (keys from `evictionCandidates`) and resolves with those it removed;
   * one that is being read meanwhile stays.
   */
  async evict(keys: readonly string[]): Promise<EvictedEntry[]> {
    return this.evictKeys(keys, 'budget');
  }

  /** A mirror was removed: none of its entries is served again, its generations stop. */
  dropRepository(repoId: string): void {
    for (const entry of [...this.index.values()]) {
      if (entry.repoId !== repoId) continue;
      this.retire(entry, 'mirror_removed');
      this.generations.get(entry)?.abandon();
    }
  }

  stats(): PackCacheStats {
    const live = [...this.index.values()];
    return {
      maxBytes: this.options.maxBytes,
      ttlSeconds: this.options.ttlMs / 1000,
      bytesHeld: this.held,
      entries: live.filter((e) => e.state === 'complete').length,
      generating: live.filter((e) => e.state === 'generating').length,
      readers: [...live, ...this.retired].reduce((n, e) => n + e.readers, 0),
    };
  }

  /** Stops every generation (their readers fail) and the expiry timer. */
  async close(): Promise<void> {
    clearInterval(this.expiry);
    const running = [...this.generations.values()];
    for (const generation of running) generation.abandon();
    await Promise.all(running.map((g) => g.done));
  }

  private lookup(key: string): PackEntry | undefined {
    const entry = this.index.get(key);
    if (!entry || entry.state === 'failed') return undefined;
    if (entry.state === 'complete' && this.isExpired(entry)) {
      this.retire(entry, 'ttl');
      return undefined;
    }
    return entry;
  }

  private isExpired(entry: PackEntry): boolean {
    return entry.expired(this.now(), this.options.ttlMs);
  }

  private holds(entry: PackEntry): boolean {
    return this.index.get(entry.key) === entry || this.retired.has(entry);
  }

  private release(entry: PackEntry, role: LeaseRole, served: number): void {
    entry.readers--;
    entry.lastUsedAt = this.now();
    if (served > 0) this.observer.served(role, served);
    if (entry.readers > 0) return;
    // Nobody is waiting for it any more: stop the work rather than finish it for no one.
    if (entry.state === 'generating') this.generations.get(entry)?.abandon();
    if (entry.retired) void this.deleteFile(entry);
  }

  /** A new entry and its generation, or undefined when the budget has no room for one. */
  private start(
    key: string,
    options: { repoId: string; dir: string; request: PackObjectsRequest },
  ): PackEntry | undefined {
    this.makeRoom(Math.max(0, this.options.maxBytes - 1));
    if (this.held >= this.options.maxBytes) return undefined;
    const entry = new PackEntry({
      key,
      repoId: options.repoId,
      path: join(this.options.dir, `${(++this.sequence).toString(36)}-${key.slice(0, 32)}.pack`),
      now: this.now(),
      resized: (delta) => {
        if (this.holds(entry)) this.held += delta;
      },
    });
    this.index.set(key, entry);
    this.generate(entry, options.dir, options.request);
    return entry;
  }

  private generate(entry: PackEntry, dir: string, request: PackObjectsRequest): void {
    const started = this.now();
    const generation = new Generation(entry, {
      git: this.options.git,
      dir,
      request,
      timeoutMs: this.options.generationTimeoutMs,
      pollMs: this.options.pollMs ?? 20,
      now: this.now,
    });
    this.generations.set(entry, generation);
    const onGrowth = () => this.checkBudget(entry);
    const watch = async () => {
      while (entry.state === 'generating') {
        await entry.changed();
        onGrowth();
      }
    };
    void watch();
    void generation.done.then((outcome) => {
      this.generations.delete(entry);
      this.observer.generation(outcome, (this.now() - started) / 1000, entry.bytes);
      if (outcome !== 'success') {
        this.options.logger.warn(
          { mirror: entry.repoId, outcome, err: entry.error },
          'pack generation failed',
        );
        // Nothing of a failed generation may look like a pack: the file goes now, read or not.
        this.retire(entry, undefined);
        void this.deleteFile(entry);
        return;
      }
      this.options.logger.info(
        {
          mirror: entry.repoId,
          bytes: entry.bytes,
          seconds: (this.now() - started) / 1000,
          readers: entry.readers,
        },
        'pack generated',
      );
      if (entry.dropWhenComplete) this.retire(entry, 'budget');
      else this.makeRoom(this.options.maxBytes);
    });
  }

  /**
   * A running generation pushed the cache over its budget: idle entries go first; if that
   * is not enough this generation is dropped when it completes (its readers still get it).
   */
  private checkBudget(entry: PackEntry): void {
    if (this.held <= this.options.maxBytes) return;
    this.makeRoom(this.options.maxBytes);
    if (this.held > this.options.maxBytes) entry.dropWhenComplete = true;
  }

  /**
   * Expired entries go (read or not: they are not served again); then, if more than
   * `targetBytes` are held, idle entries as the data budget would choose them, least
   * recently used first, and none if all of them together would not be enough.
   */
  private makeRoom(targetBytes: number): void {
    const now = this.now();
    for (const entry of [...this.index.values()])
      if (entry.expired(now, this.options.ttlMs)) this.retire(entry, 'ttl');
    if (this.held <= targetBytes) return;
    const candidates = this.evictionCandidates().map((c) => ({ ...c, holder: this.name }));
    const plan = planEviction(candidates, this.held - targetBytes);
    this.evictKeys(
      plan.evictions.map((c) => c.key),
      'budget',
    );
  }

  /** Retires those of these entries that are idle; returns them with the bytes each freed. */
  private evictKeys(keys: readonly string[], reason: EvictionReason): EvictedEntry[] {
    const removed: EvictedEntry[] = [];
    for (const key of keys) {
      const entry = this.index.get(key);
      if (!entry?.idle) continue;
      this.retire(entry, reason);
      removed.push({ key, bytes: entry.bytes });
    }
    return removed;
  }

  private expire(): void {
    this.makeRoom(this.options.maxBytes);
  }

  /** Out of the index; the file is deleted now if nobody reads it, else when the last reader leaves. */
  private retire(entry: PackEntry, reason: EvictionReason | undefined): void {
    if (entry.retired) return;
    entry.retired = true;
    if (this.index.get(entry.key) === entry) this.index.delete(entry.key);
    this.retired.add(entry);
    if (reason) this.observer.evicted(reason, entry.bytes);
    if (entry.readers === 0) void this.deleteFile(entry);
  }

  /** Counted as freed at once (the unlink follows), so one eviction never triggers a second. */
  private async deleteFile(entry: PackEntry): Promise<void> {
    if (!this.retired.delete(entry)) return;
    this.held -= entry.bytes;
    await unlink(entry.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT')
        this.options.logger.warn(
          { path: entry.path, err: err.message },
          'could not delete a pack cache entry',
        );
    });
  }

  private bypass(reason: BypassReason): Acquired {
    this.observer.lookup('bypass', reason);
    return { bypass: reason };
  }
}
