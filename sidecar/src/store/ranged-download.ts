import { Readable } from 'node:stream';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * One object read as N concurrent ranged requests, emitted in order. A single HTTP stream
 * from S3 tops out around 100 MB/s; a few parallel ranges fill the link (cachew measured
 * 1.4–2.8× on restores). Chunks that arrive early wait in a reorder buffer whose size is
 * bounded: at most `concurrency` chunks are in flight or waiting at any time, so a slow
 * consumer stalls the fetches instead of growing memory.
 */
export interface RangedDownloadOptions {
  /** Total object size in bytes (from a HEAD that also pinned the version). */
  size: number;
  chunkSize: number;
  concurrency: number;
  /** Fetches bytes `start..end` inclusive; must return exactly that many bytes. */
  fetchRange(start: number, end: number, signal: AbortSignal): Promise<Buffer>;
  /** For error messages. */
  label: string;
  signal?: AbortSignal;
}

class OrderedRangeReader extends Readable {
  private readonly options: RangedDownloadOptions;
  private readonly chunkCount: number;
  private readonly ready = new Map<number, Buffer>();
  private readonly controller = new AbortController();
  private nextToFetch = 0;
  private nextToPush = 0;
  private inFlight = 0;
  private wanted = false;
  private flushing = false;
  private ended = false;

  constructor(options: RangedDownloadOptions) {
    super({ highWaterMark: options.chunkSize });
    this.options = options;
    this.chunkCount = Math.ceil(options.size / options.chunkSize);
    const onAbort = () =>
      this.destroy(new GitMirrorError('ABORTED', `download of ${options.label} was cancelled`));
    if (options.signal?.aborted) queueMicrotask(onAbort);
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    this.once('close', () => options.signal?.removeEventListener('abort', onAbort));
  }

  override _read(): void {
    this.wanted = true;
    this.flush();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.controller.abort();
    this.ready.clear();
    callback(err);
  }

  private startFetches(): void {
    while (this.inFlight + this.ready.size < this.options.concurrency && this.nextToFetch < this.chunkCount) {
      this.fetchChunk(this.nextToFetch++);
    }
  }

  private fetchChunk(index: number): void {
    const start = index * this.options.chunkSize;
    const end = Math.min(start + this.options.chunkSize, this.options.size) - 1;
    this.inFlight++;
    this.options.fetchRange(start, end, this.controller.signal).then(
      (data) => {
        this.inFlight--;
        if (this.destroyed) return;
        if (data.length !== end - start + 1) {
          this.destroy(
            new GitMirrorError(
              'SNAPSHOT_STORE_FAILED',
              `range ${start}-${end} of ${this.options.label} returned ${data.length} bytes`,
            ),
          );
          return;
        }
        this.ready.set(index, data);
        this.flush();
      },
      (err: unknown) => {
        this.inFlight--;
        if (this.destroyed) return;
        this.destroy(
          isGitMirrorError(err)
            ? err
            : new GitMirrorError('SNAPSHOT_STORE_FAILED', `range read of ${this.options.label} failed`, {
                cause: err,
              }),
        );
      },
    );
  }

  /** Pushes whatever is next in order, then tops up the fetch window. Re-entrancy safe. */
  private flush(): void {
    if (this.flushing || this.destroyed || this.ended) return;
    this.flushing = true;
    try {
      while (this.wanted && this.ready.has(this.nextToPush)) {
        const data = this.ready.get(this.nextToPush)!;
        this.ready.delete(this.nextToPush++);
        this.wanted = this.push(data);
      }
      if (this.nextToPush === this.chunkCount) {
        this.ended = true;
        this.push(null);
        return;
      }
      this.startFetches();
    } finally {
      this.flushing = false;
    }
  }
}

export function rangedDownload(options: RangedDownloadOptions): Readable {
  if (!(options.chunkSize > 0 && options.concurrency > 0 && options.size >= 0))
    throw new TypeError('rangedDownload needs a positive chunk size and concurrency');
  return new OrderedRangeReader(options);
}
