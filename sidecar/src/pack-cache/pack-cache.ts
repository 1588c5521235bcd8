import { openSync } from 'node:fs';
import { mkdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type Clock, systemClock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { GitRunner } from '../git/git-runner.ts';
import { chooseEvictions, type EvictionCandidate, expiredKeys } from './eviction.ts';
import { Generation, type GenerationOutcome } from './generation.ts';
import { type LeaseRole, PackEntry, PackLease } from './pack-entry.ts';
import { type PackObjectsRequest, packKey } from './pack-request.ts';

export type EvictionReason = 'ttl' | 'budget' | 'mirror_removed' | 'requested';
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
 * generation that grows past it is finished for its readers and then dropped.
 */
export class PackCache {
  private readonly options: PackCacheOptions;
  private readonly observer: PackCacheObserver;
  private readonly now: () => number;
  private readonly index = new Map<string, PackEntry>();
  /** Out of the index, file still on disk for its readers. */
  private readonly retired = new Set<PackEntry>();
  private readonly generations = new Map<PackEntry, Generation>();
  private readonly expiry: NodeJS.Timeout;
  private sequence = 0;

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

  /**
   * A lease on the pack for this request: a completed entry (hit), a generation in progress
   * (joined) or a new one (miss). Bypassed when the cache is off or full.
   */
  acquire(options: { repoId: string; dir: string; request: PackObjectsRequest }): Acquired {
    if (!this.enabled) return this.bypass('disabled');
    const key = packKey({
      gitVersion: this.options.gitVersion,
      repoId: options.repoId,
      request: options.request,
    });
    const found = this.lookup(key);
    if (found) return { lease: this.lease(found, found.state === 'complete' ? 'hit' : 'joined') };
    this.makeRoom(Math.max(0, this.options.maxBytes - 1));
    if (this.bytesHeld >= this.options.maxBytes) return this.bypass('budget');
    const entry = new PackEntry({
      key,
      repoId: options.repoId,
      path: join(this.options.dir, `${(++this.sequence).toString(36)}-${key.slice(0, 32)}.pack`),
      now: this.now(),
    });
    // Created here, synchronously, so the file exists before any reader is told its path.
    let fd: number;
    try {
      fd = openSync(entry.path, 'wx', 0o600);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, 'pack cache: cannot create an entry');
      return this.bypass('unavailable');
    }
    this.index.set(key, entry);
    const lease = this.lease(entry, 'miss');
    this.generate(entry, fd, options.dir, options.request);
    return { lease };
  }

  /** Counts a request that could not even be looked up (arguments the cache does not take). */
  noteBypass(reason: BypassReason): void {
    this.observer.lookup('bypass', reason);
  }

  /** Bytes on disk now, generations in progress and entries still being read included. */
  get bytesHeld(): number {
    let bytes = 0;
    for (const entry of this.index.values()) bytes += entry.bytes;
    for (const entry of this.retired) bytes += entry.bytes;
    return bytes;
  }

  /**
   * Evicts idle entries, least recently used first, until at most `targetBytes` are held;
   * returns the bytes freed. Entries being read or generated are not touched.
   */
  evictTo(targetBytes: number, reason: EvictionReason = 'requested'): number {
    const before = this.bytesHeld;
    for (const key of chooseEvictions(this.candidates(), { heldBytes: before, targetBytes })) {
      const entry = this.index.get(key);
      if (entry) this.retire(entry, reason);
    }
    return before - this.bytesHeld;
  }

  /**
   * Completed entries nobody reads, for the data budget: whether each is past its TTL, when it
   * was last served and its bytes. Entries being generated or read are never offered.
   */
  idleEntries(): { key: string; bytes: number; lastUsedAt: number; expired: boolean }[] {
    const expired = new Set(expiredKeys(this.candidates(), this.now(), this.options.ttlMs));
    return this.candidates()
      .filter((e) => e.completedAt !== undefined && e.readers === 0)
      .map(({ key, bytes, lastUsedAt }) => ({ key, bytes, lastUsedAt, expired: expired.has(key) }));
  }

  /** Evicts these entries (keys from `idleEntries`) for the data budget; returns those it retired. */
  evictKeys(keys: readonly string[]): { key: string; bytes: number }[] {
    const removed: { key: string; bytes: number }[] = [];
    for (const key of keys) {
      const entry = this.index.get(key);
      if (!entry || entry.readers > 0 || entry.state !== 'complete') continue;
      const before = this.bytesHeld;
      this.retire(entry, 'budget');
      removed.push({ key, bytes: before - this.bytesHeld });
    }
    return removed;
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
      bytesHeld: this.bytesHeld,
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
    return expiredKeys([candidate(entry)], this.now(), this.options.ttlMs).length > 0;
  }

  private lease(entry: PackEntry, role: LeaseRole): PackLease {
    entry.readers++;
    entry.lastUsedAt = this.now();
    this.observer.lookup(role);
    return new PackLease(entry, role, (served) => this.release(entry, role, served));
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

  private generate(entry: PackEntry, fd: number, dir: string, request: PackObjectsRequest): void {
    const started = this.now();
    const generation = new Generation(entry, {
      git: this.options.git,
      fd,
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
    if (this.bytesHeld <= this.options.maxBytes) return;
    this.makeRoom(this.options.maxBytes);
    if (this.bytesHeld > this.options.maxBytes) entry.dropWhenComplete = true;
  }

  private makeRoom(targetBytes: number): void {
    for (const key of expiredKeys(this.candidates(), this.now(), this.options.ttlMs)) {
      const entry = this.index.get(key);
      if (entry) this.retire(entry, 'ttl');
    }
    this.evictTo(targetBytes, 'budget');
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
    await unlink(entry.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT')
        this.options.logger.warn(
          { path: entry.path, err: err.message },
          'could not delete a pack cache entry',
        );
    });
  }

  private candidates(): EvictionCandidate[] {
    return [...this.index.values()].map(candidate);
  }

  private bypass(reason: BypassReason): Acquired {
    this.observer.lookup('bypass', reason);
    return { bypass: reason };
  }
}

function candidate(entry: PackEntry): EvictionCandidate {
  return {
    key: entry.key,
    bytes: entry.bytes,
    lastUsedAt: entry.lastUsedAt,
    completedAt: entry.state === 'complete' ? entry.completedAt : undefined,
    readers: entry.readers,
  };
}
