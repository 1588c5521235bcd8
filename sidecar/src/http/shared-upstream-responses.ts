import { EventEmitter } from 'node:events';
import { type FileHandle, open, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Response } from 'express';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { ByteHolder, EvictedEntry, EvictionCandidate } from '../budget/byte-holder.ts';
import { describeError } from '../errors/gitmirror-error.ts';

interface ResponseHead {
  statusCode: number;
  headers: IncomingMessage['headers'];
}

interface SharedDownload {
  key: string;
  mirrorId: string;
  path: string;
  head?: ResponseHead;
  headReady: Promise<void>;
  written: number;
  done: boolean;
  error?: Error;
  readers: number;
  dropped: boolean;
  completedAt?: number;
  /** When a client last started reading it. */
  lastUsedAt: number;
  progress: EventEmitter;
}

const READ_CHUNK = 256 * 1024;
const KEEP_COMPLETED_MS = 10 * 60_000;

/**
 * While a mirror is cold, identical upload-pack requests (same body, protocol and
 * credentials) share one upstream response: the first starts a download into a spool
 * file, and every client — the first included — streams from that file, following the
 * download as it grows. Clients are decoupled from each other's speed, and upstream sends
 * the pack once. A completed spool is replayed to later identical requests until the
 * mirror is ready or it expires. The credentials are part of the key, so a response is
 * never served to a client with other credentials.
 */
export class SharedUpstreamResponses implements ByteHolder {
  readonly name = 'spool';
  private readonly dir: string;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly downloads = new Map<string, SharedDownload>();
  /** Spool files not yet deleted, served or not: what the spool holds on disk. */
  private readonly onDisk = new Set<SharedDownload>();
  private readonly sweeper: NodeJS.Timeout;
  private sequence = 0;

  constructor(options: { dir: string; logger: Logger; clock: Clock }) {
    this.dir = options.dir;
    this.logger = options.logger;
    this.clock = options.clock;
    this.sweeper = setInterval(() => this.expire(), 60_000);
    this.sweeper.unref();
  }

  /** Serves `res` from the shared download for `key`; returns whether this request started it. */
  async serve(
    mirrorId: string,
    key: string,
    start: () => Promise<IncomingMessage>,
    res: Response,
    writeHead: (head: ResponseHead, res: Response) => boolean,
  ): Promise<{ role: 'leader' | 'follower'; bytes: number }> {
    let download = this.downloads.get(key);
    const role = download ? 'follower' : 'leader';
    if (!download) download = this.begin(mirrorId, key, start);
    download.readers++;
    download.lastUsedAt = this.clock.now();
    let bytes = 0;
    try {
      await download.headReady;
      if (writeHead(download.head!, res)) bytes = await this.stream(download, res);
    } finally {
      download.readers--;
      this.release(download);
    }
    return { role, bytes };
  }

  /** The mirror is ready: new requests are served locally, so spools of it can go. */
  dropMirror(mirrorId: string): void {
    for (const download of this.downloads.values()) if (download.mirrorId === mirrorId) this.drop(download);
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const id of new Set([...this.downloads.values()].map((d) => d.mirrorId))) this.dropMirror(id);
  }

  get size(): number {
    return this.downloads.size;
  }

  bytesHeld(): number {
    let bytes = 0;
    for (const download of this.onDisk) bytes += download.written;
    return bytes;
  }

  /** Completed responses nobody is reading: expired ones first, then the least recently used. */
  evictionCandidates(): EvictionCandidate[] {
    const now = this.clock.now();
    return [...this.downloads.values()]
      .filter((d) => d.completedAt !== undefined && d.readers === 0)
      .map((d) => ({
        key: d.key,
        bytes: d.written,
        tier: now - d.completedAt! > KEEP_COMPLETED_MS ? ('expired' as const) : ('cache' as const),
        lastUsedAt: d.lastUsedAt,
      }));
  }

  async evict(keys: readonly string[]): Promise<EvictedEntry[]> {
    const removed: EvictedEntry[] = [];
    for (const key of keys) {
      const download = this.downloads.get(key);
      if (!download || download.completedAt === undefined || download.readers > 0) continue;
      removed.push({ key, bytes: download.written });
      this.drop(download);
    }
    return removed;
  }

  private begin(mirrorId: string, key: string, start: () => Promise<IncomingMessage>): SharedDownload {
    const download: SharedDownload = {
      key,
      mirrorId,
      path: join(this.dir, `${key.slice(0, 32)}-${++this.sequence}.spool`),
      headReady: Promise.resolve(),
      written: 0,
      done: false,
      readers: 0,
      dropped: false,
      lastUsedAt: this.clock.now(),
      progress: new EventEmitter(),
    };
    download.progress.setMaxListeners(0);
    this.downloads.set(key, download);
    this.onDisk.add(download);
    download.headReady = this.download(download, start);
    download.headReady.catch(() => {});
    return download;
  }

  /** Resolves when the response head is known; keeps writing the body in the background. */
  private download(download: SharedDownload, start: () => Promise<IncomingMessage>): Promise<void> {
    return new Promise((resolveHead, rejectHead) => {
      const fail = (err: Error) => {
        download.error = err;
        download.done = true;
        this.downloads.delete(download.key);
        download.progress.emit('progress');
        this.release(download);
        rejectHead(err);
      };
      (async () => {
        const upstream = await start();
        const file = await open(download.path, 'w');
        download.head = { statusCode: upstream.statusCode ?? 502, headers: upstream.headers };
        resolveHead();
        try {
          for await (const chunk of upstream as AsyncIterable<Buffer>) {
            await file.write(chunk);
            download.written += chunk.length;
            download.progress.emit('progress');
          }
        } finally {
          await file.close();
        }
        download.done = true;
        download.completedAt = this.clock.now();
        download.progress.emit('progress');
        this.release(download);
      })().catch((err: Error) => {
        this.logger.warn(
          { mirror: download.mirrorId, err: describeError(err) },
          'shared upstream download failed',
        );
        fail(err);
      });
    });
  }

  /** Streams the spool to the client, following the download; returns the bytes sent. */
  private async stream(download: SharedDownload, res: Response): Promise<number> {
    let file: FileHandle | undefined;
    try {
      file = await open(download.path, 'r');
      const buffer = Buffer.allocUnsafe(READ_CHUNK);
      let position = 0;
      while (!res.destroyed) {
        if (position < download.written) {
          const { bytesRead } = await file.read(
            buffer,
            0,
            Math.min(READ_CHUNK, download.written - position),
            position,
          );
          position += bytesRead;
          if (!res.write(Buffer.from(buffer.subarray(0, bytesRead)))) await waitForDrain(res);
        } else if (download.error) {
          res.destroy(download.error);
          return position;
        } else if (download.done) {
          res.end();
          return position;
        } else {
          await new Promise((r) => download.progress.once('progress', r));
        }
      }
      return position;
    } finally {
      await file?.close();
    }
  }

  private release(download: SharedDownload): void {
    if (download.readers === 0 && download.done && (download.dropped || download.error)) {
      // Counted as freed at once: the unlink follows, and nothing reads the file any more.
      if (this.onDisk.delete(download)) void rm(download.path, { force: true });
    }
  }

  private drop(download: SharedDownload): void {
    this.downloads.delete(download.key);
    download.dropped = true;
    this.release(download);
  }

  private expire(): void {
    const now = this.clock.now();
    for (const download of this.downloads.values()) {
      if (download.completedAt && now - download.completedAt > KEEP_COMPLETED_MS) this.drop(download);
    }
  }
}

function waitForDrain(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}
