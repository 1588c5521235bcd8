import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { CreateReply, CreateRequest, CreateWorkerData, StoredFile } from './archive-create-worker.ts';
import { contentLengths, encodeIndex, type Piece } from './archive-layout.ts';
import { type ErrorMessage, errorFromMessage } from './worker-protocol.ts';
import { rawFrame, rawFrameBytes, skippableFrame } from './zstd-frames.ts';

const CREATE_WORKER_URL = new URL('./archive-create-worker.ts', import.meta.url);

export interface ArchiveOptions {
  signal?: AbortSignal;
  /** zstd level of the entries; 3 is zstd's default and keeps up with a disk on one core. */
  level?: number;
  /** Worker threads, and zstd's own threads for the entries; capped at 4 like cachew (#281). */
  threads?: number;
}

/** What the manifest records of an archive: its size, and the size and sha256 of its index. */
export interface ArchiveDigest {
  sizeBytes: number;
  /** sha256 of the index frame, the archive's last `indexBytes` bytes. */
  sha256: string;
  indexBytes: number;
  /** What a restore extracts: the tar stream's bytes and its entries. */
  unpackedBytes: number;
  entries: number;
}

export function defaultThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** Where the pieces go: a file written at offsets, or a stream in archive order. */
type Output = { file: FileHandle } | { push(data: Buffer): boolean };

type WorkerReply = CreateReply | ErrorMessage;
type Job = Extract<CreateRequest, { type: 'content' | 'entries' }>;

/**
 * One archive being written (layout 2): the first worker lists the mirror; stored files'
 * content pieces are spread over all workers, the entries go to the first worker (which has
 * the listing). In a file every piece is written at its offset as soon as it is done; in a
 * stream, pieces are emitted in archive order as the reader asks, and the workers run at
 * most two pieces per worker ahead of it.
 */
class ArchiveRun {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly output: Output;
  private readonly mirrorDir: string;
  private readonly pieces: Piece[] = [];
  private readonly jobs: Job[] = [];
  /** Stream mode: finished frames by piece index, waiting for their turn. */
  private readonly ready = new Map<number, Buffer>();
  private readonly entriesFrames: Buffer[] = [];
  private unpacked = { unpackedBytes: 0, entries: 0 };
  private headersWritten: Promise<unknown> = Promise.resolve();
  private nextToEmit = 0;
  private storedPieces = 0;
  private wanted = false;
  private entriesPieces: Piece[] | undefined;
  private trailer: { index: Buffer; digest: ArchiveDigest } | undefined;
  private pendingJobs = 0;
  /** No more work is handed out or taken in: the workers are being terminated. */
  private stopping = false;
  private settled = false;
  private settle!: { resolve: (digest: ArchiveDigest) => void; reject: (err: Error) => void };
  readonly done: Promise<ArchiveDigest>;

  constructor(mirrorDir: string, output: Output, options: ArchiveOptions) {
    this.mirrorDir = mirrorDir;
    this.output = output;
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    const threads = options.threads ?? defaultThreads();
    const data: CreateWorkerData = {
      fd: 'file' in output ? output.file.fd : undefined,
      level: options.level ?? 3,
      threads,
    };
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(CREATE_WORKER_URL, { workerData: data });
      worker.on('message', (reply: WorkerReply) => this.onReply(worker, reply));
      worker.on('error', (err) =>
        this.fail(new GitMirrorError('PROCESS_FAILED', this.describe(err.message))),
      );
      worker.on('exit', () => {
        if (!this.stopping) this.fail(new GitMirrorError('PROCESS_FAILED', this.describe('a worker exited')));
      });
      this.workers.push(worker);
    }
    this.idle.push(...this.workers.slice(1));
    this.send(this.workers[0]!, { type: 'list', mirrorDir });
  }

  /** Stream mode: the reader wants more. */
  pull(): void {
    this.wanted = true;
    this.emitReady();
    this.dispatch();
  }

  /** Stops the workers; a run that has not finished fails with `err`. */
  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    void this.stopWorkers().then(() => this.settle.reject(err));
  }

  /** Resolves once no worker can write anymore. */
  async stopWorkers(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled(this.workers.map((w) => w.terminate()));
  }

  private succeed(digest: ArchiveDigest): void {
    if (this.settled) return;
    this.settled = true;
    this.settle.resolve(digest);
  }

  private send(worker: Worker, request: CreateRequest): void {
    if (!this.stopping) worker.postMessage(request);
  }

  private onReply(worker: Worker, reply: WorkerReply): void {
    if (this.stopping) return;
    if (reply.type === 'error') {
      this.fail(this.typed(errorFromMessage(reply)));
      return;
    }
    if (reply.type === 'frame') {
      this.entriesFrames.push(Buffer.from(reply.data));
      this.emitReady();
      return;
    }
    if (reply.type === 'listed') {
      this.unpacked = { unpackedBytes: reply.unpackedBytes, entries: reply.entries };
      this.plan(reply.stored);
    } else if (reply.type === 'content') this.contentDone(reply);
    else this.entriesDone(reply.pieces);
    this.idle.push(worker);
    this.dispatch();
  }

  /** Lays out the stored files (their sizes fix every offset) and queues the work. */
  private plan(stored: StoredFile[]): void {
    let offset = 0;
    const headers: { frame: Buffer; offset: number }[] = [];
    for (const { path, size, mode, header } of stored) {
      const frame = rawFrame(header);
      this.pieces.push({ kind: 'file', bytes: frame.length, sha256: sha256(frame), path, size, mode });
      headers.push({ frame, offset });
      this.ready.set(this.pieces.length - 1, frame);
      offset += frame.length;
      let fileOffset = 0;
      for (const length of contentLengths(size)) {
        const bytes = rawFrameBytes(length);
        this.pieces.push({ kind: 'content', bytes, sha256: '', length });
        const file = `${this.mirrorDir}/${path}`;
        this.jobs.push({
          type: 'content',
          id: this.pieces.length - 1,
          file,
          fileOffset,
          fileSize: size,
          length,
          offset,
        });
        fileOffset += length;
        offset += bytes;
      }
    }
    this.storedPieces = this.pieces.length;
    this.pendingJobs = this.jobs.length + 1;
    // A file is written in any order, so the entries start at once; a stream needs them last.
    if ('file' in this.output) {
      const output = this.output;
      this.ready.clear();
      this.jobs.unshift({ type: 'entries', offset });
      this.headersWritten = Promise.all(headers.map((h) => writeAt(output, h.frame, h.offset)));
    } else {
      this.jobs.push({ type: 'entries', offset });
    }
  }

  private dispatch(): void {
    while (!this.stopping && this.jobs.length > 0 && this.idle.length > 0) {
      const next = this.jobs[0]!;
      if (
        next.type === 'content' &&
        'push' in this.output &&
        next.id - this.nextToEmit >= 2 * this.workers.length
      )
        return;
      // The entries need the first worker: it has the listing.
      const worker = next.type === 'entries' ? this.takeIdle(this.workers[0]!) : this.idle.shift();
      if (!worker) return;
      this.jobs.shift();
      this.send(worker, next);
    }
  }

  private takeIdle(worker: Worker): Worker | undefined {
    const at = this.idle.indexOf(worker);
    return at < 0 ? undefined : this.idle.splice(at, 1)[0];
  }

  private contentDone(reply: Extract<CreateReply, { type: 'content' }>): void {
    this.pieces[reply.id]!.sha256 = reply.sha256;
    if (reply.frame) this.ready.set(reply.id, Buffer.from(reply.frame));
    this.emitReady();
    this.jobDone();
  }

  private entriesDone(pieces: { bytes: number; sha256: string }[]): void {
    this.entriesPieces = pieces.map((p) => ({ kind: 'entries', ...p }));
    this.emitReady();
    this.jobDone();
  }

  private jobDone(): void {
    if (--this.pendingJobs === 0) void this.finish().catch((err: unknown) => this.fail(this.typed(err)));
  }

  /** Stream mode: what is next in archive order, while the reader wants it. */
  private emitReady(): void {
    if (!('push' in this.output)) return;
    while (this.wanted && this.ready.has(this.nextToEmit)) {
      const frame = this.ready.get(this.nextToEmit)!;
      this.ready.delete(this.nextToEmit++);
      this.wanted = this.output.push(frame);
    }
    if (this.nextToEmit < this.storedPieces) return;
    while (this.wanted && this.entriesFrames.length > 0) {
      const frame = this.entriesFrames.shift()!;
      this.wanted = this.output.push(frame);
      this.send(this.workers[0]!, { type: 'ack', bytes: frame.length });
    }
    // The index goes last, once every frame before it is out.
    if (this.trailer && this.wanted && this.entriesFrames.length === 0) {
      const { index, digest } = this.trailer;
      this.trailer = undefined;
      this.output.push(index);
      this.succeed(digest);
    }
  }

  private async finish(): Promise<void> {
    await this.headersWritten;
    const pieces = [...this.pieces, ...this.entriesPieces!];
    const index = skippableFrame(encodeIndex(pieces));
    const sizeBytes = pieces.reduce((sum, p) => sum + p.bytes, 0) + index.length;
    await this.stopWorkers();
    const digest = { sizeBytes, sha256: sha256(index), indexBytes: index.length, ...this.unpacked };
    if ('file' in this.output) {
      await writeAt(this.output, index, sizeBytes - index.length);
      this.succeed(digest);
    } else {
      this.trailer = { index, digest };
      this.emitReady();
    }
  }

  private typed(err: unknown): GitMirrorError {
    if (err instanceof GitMirrorError) return new GitMirrorError(err.code, this.describe(err.message));
    return new GitMirrorError(
      'PROCESS_FAILED',
      this.describe(err instanceof Error ? err.message : String(err)),
    );
  }

  private describe(detail: string): string {
    return `archiving ${this.mirrorDir} failed: ${detail}`;
  }
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function writeAt(output: { file: FileHandle }, data: Buffer, offset: number): Promise<void> {
  let done = 0;
  while (done < data.length)
    done += (await output.file.write(data, done, data.length - done, offset + done)).bytesWritten;
}

function onAbort(signal: AbortSignal | undefined, run: ArchiveRun, mirrorDir: string): () => void {
  if (!signal) return () => {};
  const abort = () => run.fail(new GitMirrorError('ABORTED', `archiving ${mirrorDir} was cancelled`));
  if (signal.aborted) queueMicrotask(abort);
  else signal.addEventListener('abort', abort, { once: true });
  return () => signal.removeEventListener('abort', abort);
}

/**
 * Writes the archive of the bare mirror at `mirrorDir` (layout 2, `archive-layout.ts`) to
 * `path`, a new file: pieces are written in parallel at their offsets, and none of the
 * archive's bytes pass through this thread. Entries are relative to the mirror root,
 * `*.lock` excluded; a link or special file fails it (SNAPSHOT_UNSAFE_ENTRY).
 */
export async function writeArchiveFile(
  mirrorDir: string,
  path: string,
  options: ArchiveOptions = {},
): Promise<ArchiveDigest> {
  const file = await open(path, 'wx', 0o644);
  try {
    const run = new ArchiveRun(mirrorDir, { file }, options);
    const detach = onAbort(options.signal, run, mirrorDir);
    try {
      return await run.done;
    } finally {
      detach();
    }
  } finally {
    await file.close();
  }
}

/**
 * The same archive as a stream, for stores that upload one (S3). Bytes the consumer has not
 * read hold the workers back instead of growing a buffer. `digest` is set once it has ended.
 */
export class ArchiveStream extends Readable {
  private readonly run: ArchiveRun;
  private result: ArchiveDigest | undefined;

  constructor(mirrorDir: string, options: ArchiveOptions = {}) {
    super({ highWaterMark: 1024 * 1024 });
    this.run = new ArchiveRun(mirrorDir, { push: (data) => this.push(data) }, options);
    const detach = onAbort(options.signal, this.run, mirrorDir);
    this.run.done.then(
      (digest) => {
        this.result = digest;
        this.push(null);
        detach();
      },
      (err: Error) => {
        detach();
        this.destroy(err);
      },
    );
  }

  get digest(): ArchiveDigest {
    if (!this.result) throw new Error('archive digest read before the archive ended');
    return this.result;
  }

  override _read(): void {
    this.run.pull();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.run.fail(err ?? new GitMirrorError('ABORTED', 'the archive stream was closed early'));
    this.run.stopWorkers().then(() => callback(err));
  }
}

export function createArchiveStream(mirrorDir: string, options: ArchiveOptions = {}): ArchiveStream {
  return new ArchiveStream(mirrorDir, options);
}
