import { availableParallelism } from 'node:os';
import { Readable } from 'node:stream';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { ArchiveJob } from './archive-create-worker.ts';
import { startDigestRelay } from './digest-relay.ts';
import type { DigestEndMessage } from './digest-relay-worker.ts';
import {
  type ChunkMessage,
  type DigestResult,
  type ErrorMessage,
  errorFromMessage,
} from './worker-protocol.ts';

const ARCHIVE_WORKER_URL = new URL('./archive-create-worker.ts', import.meta.url);

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

/**
 * The compressed archive as a stream: the archive worker tars and compresses, the digest
 * relay hashes and passes chunks on to this thread. Bytes the consumer has not yet read stay
 * unacknowledged, so a slow consumer (an S3 upload) pauses the archive worker instead of
 * growing a buffer.
 */
export class ArchiveStream extends Readable {
  private readonly worker: Worker;
  private readonly relay: Worker;
  private readonly chunks: MessagePort;
  private readonly mirrorDir: string;
  private unackedBytes = 0;
  private sizeBytes = 0;
  private finished = false;
  private result: DigestResult | undefined;

  constructor(mirrorDir: string, job: Omit<ArchiveJob, 'output'>) {
    super({ highWaterMark: 1024 * 1024 });
    this.mirrorDir = mirrorDir;
    const toRelay = new MessageChannel();
    const fromRelay = new MessageChannel();
    this.chunks = fromRelay.port2;
    this.relay = startDigestRelay({ input: toRelay.port2, next: fromRelay.port1 });
    this.worker = new Worker(ARCHIVE_WORKER_URL, {
      workerData: { ...job, output: toRelay.port1 } satisfies ArchiveJob,
      transferList: [toRelay.port1],
    });
    this.chunks.on('message', (message: ChunkMessage | DigestEndMessage) => this.onChunk(message));
    this.worker.on('message', (message: ErrorMessage) => this.onError(message));
    for (const [worker, name] of [
      [this.worker, 'archive'],
      [this.relay, 'digest'],
    ] as const) {
      worker.on('error', (err) =>
        this.fail(new GitMirrorError('PROCESS_FAILED', this.describe(err.message))),
      );
      worker.on('exit', () => {
        if (!this.finished)
          this.fail(new GitMirrorError('PROCESS_FAILED', this.describe(`${name} worker exited early`)));
      });
    }
  }

  /** Size and sha256 of everything this stream produced; available once it has ended. */
  get digest(): DigestResult {
    if (!this.result) throw new Error('archive digest read before the archive ended');
    return this.result;
  }

  override _read(): void {
    if (this.unackedBytes > 0) {
      this.worker.postMessage({ type: 'ack', bytes: this.unackedBytes });
      this.unackedBytes = 0;
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.finished = true;
    // Reading files only, so stopping the workers mid-way leaves nothing behind.
    this.chunks.close();
    Promise.allSettled([this.worker.terminate(), this.relay.terminate()]).then(() => callback(err));
  }

  private onChunk(message: ChunkMessage | DigestEndMessage): void {
    if (this.destroyed) return;
    if (message.type === 'chunk') {
      const bytes = message.data.byteLength;
      this.sizeBytes += bytes;
      if (this.push(Buffer.from(message.data))) this.worker.postMessage({ type: 'ack', bytes });
      else this.unackedBytes += bytes;
    } else {
      this.finished = true;
      this.result = { sizeBytes: this.sizeBytes, sha256: message.sha256 };
      this.push(null);
      this.chunks.close();
      void this.worker.terminate();
      void this.relay.terminate();
    }
  }

  private onError(message: ErrorMessage): void {
    if (this.destroyed) return;
    const err = errorFromMessage(message);
    this.fail(new GitMirrorError(err.code, this.describe(err.message)));
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
 * `zstd -dc X.tar.zst | tar -x` restores it by hand. Tar and zstd run in one worker thread,
 * the sha256 of the result in another; `digest` has the size and sha256 once the stream ends.
 */
export function createArchiveStream(mirrorDir: string, options: ArchiveOptions = {}): ArchiveStream {
  const job = {
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
