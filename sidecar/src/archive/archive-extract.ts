import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MessageChannel, Worker } from 'node:worker_threads';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { AbortMessage, ExtractJob } from './archive-extract-worker.ts';
import { startDigestRelay } from './digest-relay.ts';
import { DEFAULT_EXTRACT_LIMITS, type ExtractLimits } from './tar-entry-policy.ts';
import {
  type ErrorMessage,
  errorFromMessage,
  MAX_BYTES_IN_FLIGHT,
  toTransferable,
} from './worker-protocol.ts';

const EXTRACT_WORKER_URL = new URL('./archive-extract-worker.ts', import.meta.url);
/** How long a stopping worker may take to finish the writes it has started. */
const STOP_GRACE_MS = 10_000;

export interface ExtractOptions {
  expectedSize: number;
  expectedSha256: string;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  limits?: Partial<ExtractLimits>;
  /** Names the archive in error messages. */
  label?: string;
}

export interface ExtractResult {
  entries: number;
  /** Uncompressed bytes of the files written. */
  bytes: number;
}

type WorkerMessage =
  | ErrorMessage
  | { type: 'ack'; bytes: number }
  | { type: 'done'; entries: number; bytes: number }
  | { type: 'closed' };

interface SinkOptions {
  job: Omit<ExtractJob, 'input'>;
  expectedSize: number;
  onProgress?: (bytesDone: number) => void;
}

/**
 * The writable end of the extraction: counts bytes against the manifest's size (too many
 * fail at once, too few at the end), hands chunks to the digest relay (which hashes them and
 * passes them on to the extract worker), and holds the write callback while too many bytes
 * are unacknowledged by the extract worker. It finishes only when the worker has
 * checked the sha256 and written every entry; when destroyed it waits for the worker to
 * stop writing, so the caller can delete the target directory without racing a late write.
 */
class ExtractSink extends Writable {
  result: ExtractResult | undefined;
  private readonly worker: Worker;
  private readonly relay: Worker;
  private readonly options: SinkOptions;
  private received = 0;
  private inFlight = 0;
  private heldWrite: (() => void) | undefined;
  private settle: ((err?: Error) => void) | undefined;
  private readonly exited: Promise<void>;

  constructor(options: SinkOptions) {
    super({ highWaterMark: 1024 * 1024 });
    this.options = options;
    const { port1, port2 } = new MessageChannel();
    this.relay = startDigestRelay({ next: port1 });
    this.worker = new Worker(EXTRACT_WORKER_URL, {
      workerData: { ...options.job, input: port2 } satisfies ExtractJob,
      transferList: [port2],
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.on('message', (message: WorkerMessage) => this.onMessage(message));
    for (const [worker, name] of [
      [this.worker, 'extract'],
      [this.relay, 'digest'],
    ] as const) {
      worker.on('error', (err) => this.finishWith(new GitMirrorError('RESTORE_FAILED', err.message)));
      worker.once('exit', () =>
        this.finishWith(new GitMirrorError('RESTORE_FAILED', `${name} worker exited`)),
      );
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const { expectedSize, onProgress } = this.options;
    this.received += chunk.length;
    if (this.received > expectedSize) {
      callback(this.mismatch(`more than the expected ${expectedSize} bytes`));
      return;
    }
    onProgress?.(this.received);
    this.inFlight += chunk.length;
    const data = toTransferable(chunk);
    this.relay.postMessage({ type: 'chunk', data }, [data]);
    if (this.inFlight < MAX_BYTES_IN_FLIGHT) callback();
    else this.heldWrite = () => callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    const { expectedSize } = this.options;
    if (this.received !== expectedSize) {
      callback(this.mismatch(`${this.received} bytes instead of ${expectedSize}`));
      return;
    }
    this.settle = (err) => callback(err);
    this.relay.postMessage({ type: 'end' });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.worker.postMessage({ type: 'abort' } satisfies AbortMessage);
    void this.relay.terminate();
    const timer = setTimeout(() => void this.worker.terminate(), STOP_GRACE_MS);
    this.exited.then(() => {
      clearTimeout(timer);
      callback(err);
    });
    if (this.result) void this.worker.terminate();
  }

  private terminate(): void {
    void this.worker.terminate();
    void this.relay.terminate();
  }

  private onMessage(message: WorkerMessage): void {
    if (message.type === 'ack') {
      this.inFlight -= message.bytes;
      if (this.inFlight >= MAX_BYTES_IN_FLIGHT) return;
      const held = this.heldWrite;
      this.heldWrite = undefined;
      held?.();
    } else if (message.type === 'done') {
      this.result = { entries: message.entries, bytes: message.bytes };
      this.terminate();
      this.finishWith(undefined);
    } else if (message.type === 'closed') {
      this.terminate();
    } else {
      this.terminate();
      this.finishWith(errorFromMessage(message));
    }
  }

  /** Reports the outcome through `_final` if it is waiting, else by destroying the sink. */
  private finishWith(err: GitMirrorError | undefined): void {
    const settle = this.settle;
    this.settle = undefined;
    if (settle) settle(err);
    else if (err && !this.destroyed && !this.result) this.destroy(err);
  }

  private mismatch(detail: string): GitMirrorError {
    return new GitMirrorError(
      'SNAPSHOT_CORRUPT',
      `${this.options.job.label} does not match its manifest: ${detail}`,
    );
  }
}

/**
 * Verifies and unpacks a snapshot archive into `targetDir`, a fresh empty directory the
 * caller made. The size is checked as bytes arrive (too many fail at once); hashing,
 * decompression and unpacking run in a worker, and the sha256 is compared before the
 * extraction is reported done. The result counts only if this resolves: on any error the
 * directory holds a partial tree and the caller must remove it.
 */
export async function extractArchive(
  source: Readable,
  targetDir: string,
  options: ExtractOptions,
): Promise<ExtractResult> {
  const label = options.label ?? 'snapshot archive';
  const limits = { ...DEFAULT_EXTRACT_LIMITS, ...options.limits };
  const sink = new ExtractSink({
    job: { targetDir, limits, expectedSha256: options.expectedSha256, label },
    expectedSize: options.expectedSize,
    onProgress: options.onProgress && ((done) => options.onProgress?.(done, options.expectedSize)),
  });
  try {
    await pipeline(source, sink, { signal: options.signal });
  } catch (err) {
    if (!sink.destroyed) sink.destroy();
    await new Promise((resolve) => (sink.closed ? resolve(undefined) : sink.once('close', resolve)));
    throw extractFailure(err, label, options.signal);
  }
  if (!sink.result) throw new GitMirrorError('RESTORE_FAILED', `extracting ${label} ended without a result`);
  return sink.result;
}

function extractFailure(err: unknown, label: string, signal: AbortSignal | undefined): GitMirrorError {
  if (signal?.aborted) return new GitMirrorError('ABORTED', `extracting ${label} was cancelled`);
  if (isGitMirrorError(err)) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new GitMirrorError('RESTORE_FAILED', `extracting ${label} failed: ${detail}`, { cause: err });
}
