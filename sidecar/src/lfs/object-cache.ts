import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../../../core/log.ts';
import { describeError, GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import { StoredLfsObjects } from '../store/lfs-objects.ts';
import type { SnapshotStore } from '../store/store.ts';
import { Arrival } from './arrival.ts';
import { writeFileRange } from './file-body.ts';
import type { LfsMetrics, LfsSource } from './lfs-metrics.ts';
import type { LocalLfsObjects } from './local-objects.ts';
import type { LfsObjectId } from './oid.ts';

/**
 * Opens an object's bytes at upstream (the response to its download action, status checked).
 * Called only when neither the local disk nor the store has the object.
 */
export type OpenUpstream = () => Promise<AsyncIterable<Buffer>>;

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

export interface OpenedObject {
  source: LfsSource;
  /**
   * Writes the bytes to `out` and ends it; rejects (leaving `out` to the caller) when the
   * object turns out corrupt or short, or `out` goes away. Call once.
   */
  send(out: Writable, onChunk?: (bytes: number) => void): Promise<void>;
}

interface Fill {
  /** The download once a source answered; clients follow it. */
  opened: Promise<Download>;
  /** Settles once the object is held locally (resolves) or the download failed (rejects). */
  settled: Promise<void>;
}

/** A download under way: its arrival, where its bytes come from, and the space it holds. */
interface Download {
  arrival: Arrival;
  source: LfsSource;
  /** Gives the space reserved for it back to the budget (a no-op without one). */
  release(): void;
}

/**
 * The data budget's side of a download (the sidecar's disk budget): space for an object is
 * set aside before its first byte is asked of the store or upstream, and refused
 * (INSUFFICIENT_STORAGE, with the numbers) when nothing evictable makes it fit, so a full
 * disk costs no upstream bandwidth and never a half-written file.
 */
export interface LfsSpace {
  reserve(request: { bytes: number; purpose: string }): Promise<{ release(): void }>;
  /** GITMIRROR_LFS_MAX_BYTES: evicts the cache's least recently used objects beyond `maxBytes`. */
  keepWithin(holder: LfsObjectCache, maxBytes: number): Promise<void>;
}

export interface LfsObjectCacheOptions {
  local: LocalLfsObjects;
  /** The snapshot store shared by the fleet; absent, objects are fetched per replica. */
  store?: SnapshotStore;
  metrics: LfsMetrics;
  logger: Logger;
  /** Local bytes kept at most: least-recently-used objects beyond it are evicted (by `space`). */
  maxLocalBytes?: number;
  /** The data budget downloads reserve their object's size from, and that keeps `maxLocalBytes`. */
  space?: LfsSpace;
}

/** What the cache could give up to free disk: a held object nobody is reading from or copying. */
export interface LfsEvictionCandidate {
  /** The object's oid. */
  key: string;
  bytes: number;
  tier: 'cache';
  /** When a client was last served from it (epoch ms); the oldest goes first. */
  lastUsedAt: number;
}

/**
 * LFS objects by oid, in three tiers: this replica's disk, the fleet's snapshot store, and
 * upstream. Each oid is downloaded at most once at a time (single-flight): a client asking
 * while it arrives follows that download. Every download is verified (sha256 and size) as it
 * streams into a temp file, and only a verified file is renamed into the local store; one
 * that came from upstream is then copied to the store in the background, so the rest of the
 * fleet reads it from there. A store copy is verified on read exactly like an upstream one:
 * its key is its sha256.
 *
 * Its disk use is a seam for a data budget: `bytesHeld`, `evictionCandidates` (least recently
 * used first) and `evict`; `GITMIRROR_LFS_MAX_BYTES` is enforced through the same three.
 */
export class LfsObjectCache {
  /** Names this cache's disk use (a metric label, a status key). */
  readonly name = 'lfs';
  readonly local: LocalLfsObjects;
  private readonly store?: StoredLfsObjects;
  private readonly metrics: LfsMetrics;
  private readonly logger: Logger;
  private readonly maxLocalBytes?: number;
  private readonly space?: LfsSpace;
  private readonly fills = new Map<string, Fill>();
  /** Downloads under way, whose temp files count as held. */
  private readonly arrivals = new Set<Arrival>();
  private readonly storeWrites = new Map<string, Promise<void>>();

  constructor(options: LfsObjectCacheOptions) {
    this.local = options.local;
    this.store = options.store && new StoredLfsObjects(options.store);
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.maxLocalBytes = options.maxLocalBytes;
    this.space = options.space;
  }

  /**
   * Bytes on the data volume: held objects and the downloads under way (with a budget, those
   * count as its reservations instead, not twice).
   */
  bytesHeld(): number {
    if (this.space) return this.local.bytesHeld;
    let arriving = 0;
    for (const arrival of this.arrivals) arriving += arrival.bytesReceived;
    return this.local.bytesHeld + arriving;
  }

  /** Held objects nothing reads from by path now (a store copy pins its object), oldest use first. */
  evictionCandidates(): LfsEvictionCandidate[] {
    return this.local
      .evictable()
      .map(({ oid, size, lastUsedAt }) => ({ key: oid, bytes: size, tier: 'cache', lastUsedAt }));
  }

  /** Deletes these objects from the local disk (the store keeps them); resolves with those deleted. */
  async evict(keys: readonly string[]): Promise<{ key: string; bytes: number }[]> {
    const removed = await this.local.evict(keys);
    this.metrics.evictedBytes.inc(removed.reduce((sum, r) => sum + r.bytes, 0));
    return removed;
  }

  /** Where the object can be had without upstream, or undefined. Asks the store with a HEAD. */
  async locate(object: LfsObjectId): Promise<'local' | 'store' | undefined> {
    if (this.local.sizeOf(object.oid) === object.size) return 'local';
    return (await this.storeHas(object)) ? 'store' : undefined;
  }

  /**
   * The object's bytes (or a range) for a client: from disk when held, else by following its
   * download from the store or, failing that, upstream.
   */
  async open(
    object: LfsObjectId,
    options: { range?: ByteRange; upstream: OpenUpstream },
  ): Promise<OpenedObject> {
    const local = await this.openLocal(object, options.range);
    if (local) return { source: 'local', send: local };
    const { arrival, source } = await this.fill(object, options.upstream).opened;
    const body = arrival.follow(options.range);
    return {
      source,
      send: (out, onChunk) => {
        if (onChunk) body.on('data', (chunk: Buffer) => onChunk(chunk.length));
        return pipeline(body, out);
      },
    };
  }

  /**
   * Makes sure the object is in the fleet's store and, when it had to be downloaded, on this
   * disk: for prefetch. Resolves with where it was found (or `upstream` if fetched).
   */
  async ensure(object: LfsObjectId, upstream: OpenUpstream): Promise<LfsSource> {
    if (this.local.sizeOf(object.oid) === object.size) {
      if (this.store && !(await this.storeHas(object))) await this.copyToStore(object);
      return 'local';
    }
    if (await this.storeHas(object)) return 'store';
    const fill = this.fill(object, upstream);
    const { source } = await fill.opened;
    await fill.settled;
    // Prefetch is done only once the fleet can read the object: join the copy the download
    // queued, or make one if that copy failed.
    if (this.store && source === 'upstream' && !(await this.storeHas(object))) await this.copyToStore(object);
    return source;
  }

  /** Resolves once no download is running and every store copy queued so far is done (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.fills.size > 0 || this.storeWrites.size > 0)
      await Promise.allSettled([
        ...[...this.fills.values()].map((f) => f.settled),
        ...this.storeWrites.values(),
      ]);
  }

  private async openLocal(object: LfsObjectId, range?: ByteRange): Promise<OpenedObject['send'] | undefined> {
    const held = this.local.use(object.oid);
    if (!held) return undefined;
    if (held.size !== object.size)
      throw new GitMirrorError(
        'BAD_REQUEST',
        `LFS object ${object.oid} has ${held.size} bytes, not the ${object.size} asked for`,
      );
    // Open first: an eviction between the lookup and the read sends us to the next tier.
    const handle = await open(held.path, 'r').catch(() => undefined);
    if (!handle) return undefined;
    const bytes = range ?? { start: 0, end: object.size - 1 };
    return (out, onChunk) => writeFileRange(handle, bytes, out, onChunk).finally(() => handle.close());
  }

  private fill(object: LfsObjectId, upstream: OpenUpstream): Fill {
    const running = this.fills.get(object.oid);
    if (running) return running;
    const opened = this.openSource(object, upstream);
    const settled = opened.then((download) => this.finish(download));
    const fill: Fill = { opened, settled };
    settled.catch(() => {}).finally(() => this.fills.delete(object.oid));
    this.fills.set(object.oid, fill);
    return fill;
  }

  private async openSource(object: LfsObjectId, upstream: OpenUpstream): Promise<Download> {
    const reservation = await this.space?.reserve({
      bytes: object.size,
      purpose: `download of LFS object ${object.oid}`,
    });
    const release = () => reservation?.release();
    try {
      const fromStore = await this.openFromStore(object);
      const source: LfsSource = fromStore ? 'store' : 'upstream';
      const body = fromStore ?? (await upstream());
      const arrival = await Arrival.start({
        object,
        tempPath: this.local.tempPath(),
        body,
        label: source === 'store' ? 'the snapshot store' : 'upstream',
        onBytes: source === 'upstream' ? (n) => this.metrics.upstreamBytes.inc(n) : undefined,
      });
      this.arrivals.add(arrival);
      return { arrival, source, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  private async openFromStore(object: LfsObjectId): Promise<Readable | undefined> {
    try {
      return await this.store?.open(object);
    } catch (err) {
      this.logger.warn(
        { oid: object.oid, err: describeError(err) },
        'LFS store read failed; asking upstream',
      );
      return undefined;
    }
  }

  /** After the download: keep it (verified) or drop it (not); copy upstream's bytes to the store. */
  private async finish({ arrival, source, release }: Download): Promise<void> {
    const { oid, size } = arrival.object;
    try {
      await arrival.done;
      await arrival.sync();
      await this.local.adopt(oid, size, arrival.tempPath);
    } catch (err) {
      await rm(arrival.tempPath, { force: true });
      if (isGitMirrorError(err, 'LFS_OBJECT_CORRUPT') && source !== 'local') {
        this.metrics.verifyFailures.inc({ source });
        if (source === 'store') this.store?.distrust(oid);
      }
      this.logger.warn({ oid, source, err: describeError(err) }, 'LFS object download failed; nothing kept');
      throw err;
    } finally {
      this.arrivals.delete(arrival);
      arrival.retire();
      // Adopted, the bytes are held (bytesHeld); failed, they are gone.
      release();
    }
    if (source === 'store') this.store?.verified(oid);
    if (source === 'upstream' && this.store) void this.copyToStore(arrival.object).catch(() => {});
    await this.keepWithinBound();
  }

  /**
   * Uploads a held object to the store in the background, once per oid at a time, pinned
   * against eviction until done. Serving never waits for it; a failure is counted and logged.
   */
  private copyToStore(object: LfsObjectId): Promise<void> {
    const running = this.storeWrites.get(object.oid);
    if (running) return running;
    const unpin = this.local.pin(object.oid);
    const write = this.upload(object).finally(() => {
      unpin();
      this.storeWrites.delete(object.oid);
      void this.keepWithinBound();
    });
    this.storeWrites.set(object.oid, write);
    return write;
  }

  private async upload(object: LfsObjectId): Promise<void> {
    try {
      await this.store!.write(object, () => {
        const held = this.local.peek(object.oid);
        return held?.size === object.size ? createReadStream(held.path) : undefined;
      });
      this.metrics.storeWrites.inc({ outcome: 'ok' });
    } catch (err) {
      this.metrics.storeWrites.inc({ outcome: 'failed' });
      this.logger.warn(
        { oid: object.oid, err: describeError(err) },
        'copying an LFS object to the store failed',
      );
      throw new GitMirrorError(
        'SNAPSHOT_STORE_FAILED',
        `LFS object ${object.oid} could not be copied to the store`,
        {
          cause: err,
        },
      );
    }
  }

  private async storeHas(object: LfsObjectId): Promise<boolean> {
    try {
      return (await this.store?.has(object)) ?? false;
    } catch (err) {
      this.logger.warn({ oid: object.oid, err: describeError(err) }, 'LFS store lookup failed');
      return false;
    }
  }

  /**
   * GITMIRROR_LFS_MAX_BYTES: least recently used objects go until the rest fit, evicted by the
   * data budget as for any write (one eviction order, one count).
   */
  private async keepWithinBound(): Promise<void> {
    const bound = this.maxLocalBytes;
    if (bound === undefined || this.local.bytesHeld <= bound) return;
    await this.space?.keepWithin(this, bound);
  }
}
