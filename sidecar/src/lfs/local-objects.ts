import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { isOid } from './oid.ts';

/** How stale a file's mtime may get before a read refreshes it (it orders eviction after a restart). */
const TOUCH_EVERY_MS = 60 * 60 * 1000;

interface Entry {
  size: number;
  /** When the file's mtime was last set: the on-disk trace of its last use. */
  touchedAt: number;
}

export interface LocalObject {
  path: string;
  size: number;
}

/**
 * The LFS objects this replica holds: `{dir}/objects/{oid[0:2]}/{oid}`, each written whole
 * and verified before it is renamed in (see `Arrival`), so every file there is a correct
 * object. Temp files live in `{dir}/tmp` on the same filesystem and are swept at start.
 *
 * The index is in memory, in least-recently-used order, built from the directory at start
 * (oldest mtime first) and kept up to date by every read; `evictTo` is the hook a data budget
 * calls. The snapshot store keeps evicted objects for the fleet.
 */
export class LocalLfsObjects {
  readonly dir: string;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly now: () => number;
  /** Insertion order is recency: a read moves an entry to the end. */
  private readonly index = new Map<string, Entry>();
  private readonly pins = new Map<string, number>();
  private bytes = 0;

  private constructor(dir: string, now: () => number) {
    this.dir = dir;
    this.objectsDir = join(dir, 'objects');
    this.tmpDir = join(dir, 'tmp');
    this.now = now;
  }

  /** Opens (creating) the store at `dir`: sweeps temp files and indexes what is there. */
  static async open(dir: string, options: { now?: () => number } = {}): Promise<LocalLfsObjects> {
    const store = new LocalLfsObjects(dir, options.now ?? Date.now);
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
    const now = this.now();
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
    this.index.set(oid, { size, touchedAt: this.now() });
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

  /**
   * Deletes least-recently-used objects until at most `targetBytes` are held (pinned ones are
   * skipped). Readers that already opened an evicted file finish reading it.
   */
  async evictTo(targetBytes: number): Promise<{ objects: number; bytes: number }> {
    let objects = 0;
    let bytes = 0;
    for (const [oid, entry] of [...this.index]) {
      if (this.bytes <= targetBytes) break;
      if (this.pins.has(oid)) continue;
      this.index.delete(oid);
      this.bytes -= entry.size;
      await unlink(this.pathOf(oid)).catch(() => {});
      objects++;
      bytes += entry.size;
    }
    return { objects, bytes };
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
      this.index.set(oid, { size, touchedAt: mtime });
      this.bytes += size;
    }
  }
}
