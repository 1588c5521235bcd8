import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { addAbortSignal, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { ObjectInfo, ReadRange, SnapshotStore } from './store.ts';
import { TEMP_MARKER, validateListPrefix, validateStoreKey } from './store-key.ts';

/**
 * Temp files older than this are leftovers of a crashed writer: a live put rewrites its temp
 * file continuously, so an hour without a write means nobody will finish it.
 */
const STALE_TEMP_MS = 60 * 60 * 1000;
const READ_CHUNK = 1024 * 1024;

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * `file:///path`: one file per key under a root directory. Writes go to a temp file beside
 * the target and are renamed into place only when complete, so readers (and `list`) never
 * see a partial archive, on a local disk or a shared volume alike.
 */
export class FileSnapshotStore implements SnapshotStore {
  readonly root: string;
  readonly description: string;

  constructor(root: string) {
    if (!isAbsolute(root))
      throw new GitMirrorError('CONFIG_INVALID', 'file snapshot store path must be absolute');
    this.root = resolve(root);
    this.description = `file://${this.root}`;
  }

  async put(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    const target = this.pathOf(key);
    const temp = tempPathFor(target);
    try {
      await mkdir(dirname(target), { recursive: true });
      await pipeline(body, createWriteStream(temp, { flags: 'wx', mode: 0o644 }), { signal: options.signal });
      const info = await syncFile(temp);
      await rename(temp, target);
      return { key, sizeBytes: info.size, etag: etagOf(info), lastModified: info.mtime };
    } catch (err) {
      // A put that failed before piping (mkdir) still ends the producer's work.
      body.destroy();
      await rm(temp, { force: true }).catch(() => {});
      if (options.signal?.aborted) throw new GitMirrorError('ABORTED', `writing ${key} was cancelled`);
      // The body's own typed error (e.g. the archiver failing) says more than "store failed".
      if (isGitMirrorError(err)) throw err;
      throw this.failure('write', key, err);
    }
  }

  async putFile(
    key: string,
    write: (path: string) => Promise<void>,
    options: { signal?: AbortSignal } = {},
  ): Promise<ObjectInfo> {
    const target = this.pathOf(key);
    const temp = tempPathFor(target);
    try {
      await mkdir(dirname(target), { recursive: true });
      await write(temp);
      if (options.signal?.aborted) throw new GitMirrorError('ABORTED', `writing ${key} was cancelled`);
      const info = await syncFile(temp);
      await rename(temp, target);
      return { key, sizeBytes: info.size, etag: etagOf(info), lastModified: info.mtime };
    } catch (err) {
      await rm(temp, { force: true }).catch(() => {});
      if (options.signal?.aborted) throw new GitMirrorError('ABORTED', `writing ${key} was cancelled`);
      if (isGitMirrorError(err)) throw err;
      throw this.failure('write', key, err);
    }
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  async putBytes(key: string, body: Buffer): Promise<ObjectInfo> {
    const target = this.pathOf(key);
    const temp = tempPathFor(target);
    try {
      await mkdir(dirname(target), { recursive: true });
      const handle = await open(temp, 'wx', 0o644);
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, target);
      const info = await stat(target);
      return { key, sizeBytes: info.size, etag: etagOf(info), lastModified: info.mtime };
    } catch (err) {
      await rm(temp, { force: true });
      throw this.failure('write', key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(key);
    try {
      const info = await stat(path);
      return info.isFile()
        ? { key, sizeBytes: info.size, etag: etagOf(info), lastModified: info.mtime }
        : undefined;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return undefined;
      throw this.failure('stat', key, err);
    }
  }

  async get(key: string, options: { range?: ReadRange; signal?: AbortSignal } = {}): Promise<Readable> {
    const path = this.pathOf(key);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR')
        throw new GitMirrorError('SNAPSHOT_NOT_FOUND', `${key} does not exist in ${this.description}`);
      throw this.failure('read', key, err);
    }
    try {
      const { size } = await handle.stat();
      const bounds = options.range ? clampRange(key, options.range, size) : {};
      const stream = handle.createReadStream({ ...bounds, highWaterMark: READ_CHUNK, autoClose: true });
      return options.signal ? addAbortSignal(options.signal, stream) : stream;
    } catch (err) {
      await handle.close();
      if (isGitMirrorError(err)) throw err;
      throw this.failure('read', key, err);
    }
  }

  async getBytes(key: string): Promise<Buffer | undefined> {
    const path = this.pathOf(key);
    try {
      return await readFile(path);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return undefined;
      throw this.failure('read', key, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validateListPrefix(prefix);
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const found: ObjectInfo[] = [];
    try {
      await this.walk(base, prefix, found);
    } catch (err) {
      throw this.failure('list', prefix, err);
    }
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.pathOf(key));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return;
      throw this.failure('delete', key, err);
    }
  }

  /** Recursive listing of `dirKey` (relative, `/`-separated); sweeps stale temp files it meets. */
  private async walk(dirKey: string, prefix: string, found: ObjectInfo[]): Promise<void> {
    const dir = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return [];
      throw err;
    });
    for (const entry of entries) {
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.name.includes(TEMP_MARKER)) {
        await sweepIfStale(join(dir, entry.name));
      } else if (entry.isDirectory()) {
        if (prefix.startsWith(`${key}/`) || key.startsWith(prefix)) await this.walk(key, prefix, found);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const info = await stat(join(dir, entry.name)).catch(() => undefined);
        if (info) found.push({ key, sizeBytes: info.size, etag: etagOf(info), lastModified: info.mtime });
      }
    }
  }

  private pathOf(key: string): string {
    validateStoreKey(key);
    const path = join(this.root, ...key.split('/'));
    // validateStoreKey already rules out traversal; this guards against a future change to it.
    if (!path.startsWith(this.root + sep))
      throw new GitMirrorError('SNAPSHOT_STORE_FAILED', 'key escapes the store');
    return path;
  }

  private failure(op: string, key: string, err: unknown): GitMirrorError {
    if (isGitMirrorError(err)) return err;
    const detail = errnoOf(err) ?? (err instanceof Error ? err.message : String(err));
    return new GitMirrorError(
      'SNAPSHOT_STORE_FAILED',
      `${op} ${key} in ${this.description} failed: ${detail}`,
      {
        cause: err,
      },
    );
  }
}

function tempPathFor(target: string): string {
  return `${dirname(target)}${sep}${TEMP_MARKER}${randomBytes(8).toString('hex')}`;
}

/** fsync before rename: otherwise a crash can leave the final name pointing at an empty file. */
async function syncFile(path: string): Promise<Stats> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
    return await handle.stat();
  } finally {
    await handle.close();
  }
}

async function sweepIfStale(path: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (info && Date.now() - info.mtimeMs > STALE_TEMP_MS) await rm(path, { force: true, recursive: true });
}

function etagOf(info: Stats): string {
  return `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}-${info.ino.toString(16)}"`;
}

/** S3 semantics: an end past the object is clipped; a start at or past it is an error. */
function clampRange(key: string, range: ReadRange, size: number): { start: number; end: number } {
  if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0)
    throw new GitMirrorError('SNAPSHOT_STORE_FAILED', `invalid byte range for ${key}`);
  if (range.start >= size || range.end < range.start)
    throw new GitMirrorError(
      'SNAPSHOT_STORE_FAILED',
      `byte range ${range.start}-${range.end} of ${key} is not satisfiable`,
    );
  return { start: range.start, end: Math.min(range.end, size - 1) };
}
