import { availableParallelism } from 'node:os';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { ArchiveJob } from './archive-create-worker.ts';
import { type ChunkMessage, type ErrorMessage, errorFromMessage } from './worker-protocol.ts';

const WORKER_URL = new URL('./archive-create-worker.ts', import.meta.url);

export interface ArchiveOptions {
  signal?: AbortSignal;
  /** zstd level; 3 is zstd's default and keeps up with a disk on one core. */
  level?: number;
  /** zstd compression threads; capped at 4 like cachew (#281): more cost memory for little gain. */
  threads?: number;
}

export function defaultCompressionThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

type WorkerMessage = ChunkMessage | ErrorMessage | { type: 'end' };

/**
 * The compressed archive as a stream fed by the worker. Every chunk the consumer has not
 * yet read is an unacknowledged chunk, so a slow consumer (an S3 upload) pauses the worker
 * instead of growing a buffer.
 */
class ArchiveStream extends Readable {
  private readonly worker: Worker;
  private readonly mirrorDir: string;
  private unacked = 0;
  private finished = false;

  constructor(mirrorDir: string, job: ArchiveJob) {
    super({ highWaterMark: 1024 * 1024 });
    this.mirrorDir = mirrorDir;
    this.worker = new Worker(WORKER_URL, { workerData: job });
    this.worker.on('message', (message: WorkerMessage) => this.onMessage(message));
    this.worker.on('error', (err) =>
      this.fail(new GitMirrorError('PROCESS_FAILED', this.describe(err.message))),
    );
    this.worker.on('exit', () => {
      if (!this.finished)
        this.fail(new GitMirrorError('PROCESS_FAILED', this.describe('archive worker exited early')));
    });
  }

  override _read(): void {
    if (this.unacked > 0) {
      this.worker.postMessage({ type: 'ack', count: this.unacked });
      this.unacked = 0;
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.finished = true;
    // Reading files only, so stopping the worker mid-way leaves nothing behind.
    this.worker.terminate().then(
      () => callback(err),
      () => callback(err),
    );
  }

  private onMessage(message: WorkerMessage): void {
    if (this.destroyed) return;
    if (message.type === 'chunk') {
      if (this.push(Buffer.from(message.data))) this.worker.postMessage({ type: 'ack', count: 1 });
      else this.unacked++;
    } else if (message.type === 'end') {
      this.finished = true;
      this.push(null);
      void this.worker.terminate();
    } else {
      const err = errorFromMessage(message);
      this.fail(new GitMirrorError(err.code, this.describe(err.message)));
    }
  }

  private fail(err: GitMirrorError): void {
    if (!this.destroyed && !this.finished) this.destroy(err);
  }

  private describe(detail: string): string {
    return `archiving ${this.mirrorDir} failed: ${detail}`;
  }
}

/**
 * A `tar.zst` of the bare mirror at `mirrorDir`: plain ustar/pax entries relative to the
 * mirror root, `*.lock` excluded, one zstd frame with a content checksum, so
 * `zstd -dc X.tar.zst | tar -x` restores it by hand. Tar and zstd run in a worker thread.
 */
export function createArchiveStream(mirrorDir: string, options: ArchiveOptions = {}): Readable {
  const job: ArchiveJob = {
    mirrorDir,
    level: options.level ?? 3,
    threads: options.threads ?? defaultCompressionThreads(),
  };
  const stream = new ArchiveStream(mirrorDir, job);
  const { signal } = options;
  if (signal) {
    const onAbort = () =>
      stream.destroy(new GitMirrorError('ABORTED', `archiving ${mirrorDir} was cancelled`));
    if (signal.aborted) queueMicrotask(onAbort);
    else signal.addEventListener('abort', onAbort, { once: true });
    stream.once('close', () => signal.removeEventListener('abort', onAbort));
  }
  return stream;
}
