import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { type Clock, systemClock } from '../../../core/clock.ts';
import { isOid } from './oid.ts';

/** How stale a file's mtime may get before a read refreshes it (it orders eviction after a restart). */
const TOUCH_EVERY_MS = 60 * 60 * 1000;

interface Entry {
  size: number;
  /** When a client was last served from it (epoch ms). */
  usedAt: number;
  /** When the file's mtime was last set: the on-disk trace of its last use. */
  touchedAt: number;
}

export interface LocalObject {
  path: string;
  size: number;
}

/** A held object that may be evicted now (nothing pins it), as eviction sees it. */
export interface EvictableObject {
  oid: string;
  size: number;
  lastUsedAt: number;
}

/**
 * The LFS objects this replica holds: `{dir}/objects/{oid[0:2]}/{oid}`, each written whole
 * and verified before it is renamed in (see `Arrival`), so every file there is a correct
 * object. Temp files live in `{dir}/tmp` on the same filesystem and are swept at start.
 *
 * The index is in memory, in least-recently-used order, built from the directory at start
 * (oldest mtime first) and kept up to date by every read. `evictable` and `evict` are what a
 * bound or a data budget works with; the snapshot store keeps evicted objects for the fleet.
 */
export class LocalLfsObjects {
  readonly dir: string;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly clock: Clock;
  /** Insertion order is recency: a read moves an entry to the end. */
  private readonly index = new Map<string, Entry>();
  private readonly pins = new Map<string, number>();
  private bytes = 0;

  private constructor(dir: string, clock: Clock) {
    this.dir = dir;
    this.objectsDir = join(dir, 'objects');
    this.tmpDir = join(dir, 'tmp');
    this.clock = clock;
  }

  /** Opens (creating) the store at `dir`: sweeps temp files and indexes what is there. */
  static async open(dir: string, options: { clock?: Clock } = {}): Promise<LocalLfsObjects> {
    const store = new LocalLfsObjects(dir, options.clock ?? systemClock);
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { recursive: true });
    await mkdir(store.objectsDir, { recursive: true });
    await store.scan();
    return store;
  }

  get bytesHeld(): number {
    return this.bytes;
  }

  get objectCount(): number {
    return this.index.size;
  }

  has(oid: string): boolean {
    return this.index.has(oid);
  }

  /** The object's file and size, marking it used now; undefined when not held. */
  use(oid: string): LocalObject | undefined {
    const entry = this.index.get(oid);
    if (!entry) return undefined;
    this.index.delete(oid);
    this.index.set(oid, entry);
    const path = this.pathOf(oid);
    const now = this.clock.now();
    entry.usedAt = now;
    if (now - entry.touchedAt > TOUCH_EVERY_MS) {
      entry.touchedAt = now;
      const when = new Date(now);
      void utimes(path, when, when).catch(() => {});
    }
    return { path, size: entry.size };
  }

  /** Size of a held object without counting it as a use. */
  sizeOf(oid: string): number | undefined {
    return this.index.get(oid)?.size;
  }

  /** The object's file and size without counting it as a use (background work). */
  peek(oid: string): LocalObject | undefined {
    const entry = this.index.get(oid);
    return entry ? { path: this.pathOf(oid), size: entry.size } : undefined;
  }

  /** A fresh path in the temp dir, on the same filesystem as the objects. */
  tempPath(): string {
    return join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
  }

  /**
   * Moves a complete, verified, synced temp file into place as `oid`. Returns false (and
   * removes the temp file) when the object is already held.
   */
  async adopt(oid: string, size: number, tempPath: string): Promise<boolean> {
    if (!isOid(oid)) throw new TypeError(`not an LFS oid: ${oid}`);
    if (this.index.has(oid)) {
      await rm(tempPath, { force: true });
      return false;
    }
    const target = this.pathOf(oid);
    await mkdir(join(this.objectsDir, oid.slice(0, 2)), { recursive: true });
    await rename(tempPath, target);
    const now = this.clock.now();
    this.index.set(oid, { size, usedAt: now, touchedAt: now });
    this.bytes += size;
    return true;
  }

  /** Keeps an object from eviction while something (a store upload) still reads it by path. */
  pin(oid: string): () => void {
    this.pins.set(oid, (this.pins.get(oid) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.pins.get(oid) ?? 1) - 1;
      if (n <= 0) this.pins.delete(oid);
      else this.pins.set(oid, n);
    };
  }

  /** Objects nothing pins, least recently used first. */
  evictable(): EvictableObject[] {
    const found: EvictableObject[] = [];
    for (const [oid, entry] of this.index)
      if (!this.pins.has(oid)) found.push({ oid, size: entry.size, lastUsedAt: entry.usedAt });
    return found;
  }

  /**
   * Deletes these objects, skipping any pinned or gone meanwhile; resolves with those deleted
   * and their sizes. Readers that already opened a deleted file finish reading it.
   */
  async evict(oids: Iterable<string>): Promise<{ key: string; bytes: number }[]> {
    const removed: { key: string; bytes: number }[] = [];
    for (const oid of oids) {
      const entry = this.index.get(oid);
      if (!entry || this.pins.has(oid)) continue;
      this.index.delete(oid);
      this.bytes -= entry.size;
      removed.push({ key: oid, bytes: entry.size });
      await unlink(this.pathOf(oid)).catch(() => {});
    }
    return removed;
  }

  private pathOf(oid: string): string {
    return join(this.objectsDir, oid.slice(0, 2), oid);
  }

  /** Indexes the objects on disk, oldest first; anything that is not an object is removed. */
  private async scan(): Promise<void> {
    const found: { oid: string; size: number; mtime: number }[] = [];
    for (const fanout of await readdir(this.objectsDir)) {
      const dir = join(this.objectsDir, fanout);
      const names = await readdir(dir).catch(() => undefined);
      if (!names) {
        await rm(dir, { force: true });
        continue;
      }
      for (const name of names) {
        const path = join(dir, name);
        const info = await stat(path).catch(() => undefined);
        if (!info?.isFile() || !isOid(name) || name.slice(0, 2) !== fanout) {
          await rm(path, { recursive: true, force: true });
          continue;
        }
        found.push({ oid: name, size: info.size, mtime: info.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const { oid, size, mtime } of found) {
      this.index.set(oid, { size, usedAt: mtime, touchedAt: mtime });
      this.bytes += size;
    }
  }
}
