import { createHash } from 'node:crypto';
import { constants, fstatSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import { defaultThreads } from './archive-create.ts';
import type {
  ExtractReply,
  ExtractRequest,
  ExtractTask,
  ExtractWorkerData,
} from './archive-extract-worker.ts';
import { MAX_INDEX_BYTES, PIECE_BYTES, type PlacedPiece, placePieces } from './archive-layout.ts';
import {
  classifyEntry,
  DEFAULT_EXTRACT_LIMITS,
  type ExtractLimits,
  safeSegments,
  sanitizedMode,
  unsafe,
} from './tar-entry-policy.ts';
import {
  type ErrorMessage,
  errorFromMessage,
  MAX_BYTES_IN_FLIGHT,
  toTransferable,
} from './worker-protocol.ts';
import { skippableFrameData } from './zstd-frames.ts';

const EXTRACT_WORKER_URL = new URL('./archive-extract-worker.ts', import.meta.url);
/** How long a stopping worker may take to finish the writes it has started. */
const STOP_GRACE_MS = 10_000;
const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Where the archive's bytes come from. */
export interface ArchiveSource {
  /** Bytes `start..end` (inclusive), as a stream. */
  read(range: { start: number; end: number }, signal: AbortSignal): Promise<Readable>;
  /** The archive as a local file: the workers then read it themselves, in parallel. */
  fd?: number;
}

/** What the manifest vouches for. Layout 1: one zstd stream with one sha256. Layout 2: `archive-layout.ts`. */
export type ArchiveCheck =
  | { layout: 1; sizeBytes: number; sha256: string }
  | { layout: 2; sizeBytes: number; sha256: string; indexBytes: number };

export interface ExtractOptions {
  signal?: AbortSignal;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  limits?: Partial<ExtractLimits>;
  /** Names the archive in error messages. */
  label?: string;
  /** Worker threads; defaults to the cores, at most 4. */
  threads?: number;
}

export interface ExtractResult {
  entries: number;
  /** Uncompressed bytes of the files written. */
  bytes: number;
}

type WorkerMessage = ExtractReply | ErrorMessage;

interface Slot {
  worker: Worker;
  task?: ExtractTask;
  /** Port mode: bytes sent and not yet acknowledged, and a feed waiting for room. */
  inFlight: number;
  wake?: () => void;
  stopped: Promise<void>;
}

/**
 * One restore: reads the index (layout 2), creates the stored files, then hands runs of
 * pieces to a pool of workers, each taking the next run when it is done with one. Workers
 * read a local archive themselves; otherwise each run is a ranged read that this thread
 * streams to its worker with a bounded amount in flight.
 */
class RestoreRun {
  private readonly source: ArchiveSource;
  private readonly targetDir: string;
  private readonly check: ArchiveCheck;
  private readonly options: ExtractOptions;
  private readonly label: string;
  private readonly limits: ExtractLimits;
  private readonly control = new SharedArrayBuffer(4);
  private readonly totals = new SharedArrayBuffer(16);
  private readonly abort = new AbortController();
  private readonly slots: Slot[] = [];
  private tasks: ExtractTask[] = [];
  private running = 0;
  private bytesDone = 0;
  private failure: Error | undefined;
  private stopping = false;
  private settle!: { resolve: () => void; reject: (err: Error) => void };
  private readonly allDone = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));

  constructor(source: ArchiveSource, targetDir: string, check: ArchiveCheck, options: ExtractOptions) {
    this.source = source;
    this.targetDir = targetDir;
    this.check = check;
    this.options = options;
    this.label = options.label ?? 'snapshot archive';
    this.limits = { ...DEFAULT_EXTRACT_LIMITS, ...options.limits };
    this.allDone.catch(() => {});
  }

  async run(): Promise<ExtractResult> {
    const onAbort = () => this.fail(new GitMirrorError('ABORTED', `extracting ${this.label} was cancelled`));
    this.options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (this.options.signal?.aborted)
        throw new GitMirrorError('ABORTED', `extracting ${this.label} was cancelled`);
      // Workers load their modules while the index is read.
      const threads = this.check.layout === 1 ? 1 : (this.options.threads ?? defaultThreads());
      for (let i = 0; i < threads; i++) this.slots.push(this.startWorker());
      this.checkLocalSize();
      const pieces = await this.pieces();
      await this.createStoredFiles(pieces);
      this.tasks = groupIntoTasks(pieces);
      this.running = this.tasks.length;
      // Port mode: done once the workers are and the read has ended (the index came again).
      const feeding = this.source.fd === undefined ? this.feedAll() : undefined;
      feeding?.catch((err: unknown) => this.fail(err as Error));
      if (!feeding) for (const slot of this.slots) this.dispatch(slot);
      await this.allDone;
      await feeding;
      const totals = new BigInt64Array(this.totals);
      return { entries: Number(totals[0]), bytes: Number(totals[1]) };
    } catch (err) {
      this.fail(err as Error);
      throw this.failure;
    } finally {
      this.options.signal?.removeEventListener('abort', onAbort);
      await this.stopWorkers();
    }
  }

  private startWorker(): Slot {
    const data: ExtractWorkerData = {
      targetDir: this.targetDir,
      limits: this.limits,
      label: this.label,
      fd: this.source.fd,
      control: this.control,
      totals: this.totals,
    };
    const worker = new Worker(EXTRACT_WORKER_URL, { workerData: data });
    const slot: Slot = {
      worker,
      inFlight: 0,
      stopped: new Promise<void>((resolve) => {
        worker.once('exit', () => resolve());
        // A worker that reports an error has stopped too: it closed its files first.
        worker.on('message', (m: WorkerMessage) => (m.type === 'stopped' || m.type === 'error') && resolve());
      }),
    };
    worker.on('message', (message: WorkerMessage) => this.onMessage(slot, message));
    worker.on('error', (err) => this.fail(new GitMirrorError('RESTORE_FAILED', err.message)));
    worker.once('exit', () => {
      if (!this.stopping) this.fail(new GitMirrorError('RESTORE_FAILED', 'an extract worker exited'));
    });
    return slot;
  }

  private onMessage(slot: Slot, message: WorkerMessage): void {
    if (message.type === 'error') this.fail(errorFromMessage(message));
    else if (message.type === 'ack') {
      slot.inFlight -= message.bytes;
      this.progress(message.bytes);
      slot.wake?.();
    } else if (message.type === 'done') {
      if (this.source.fd !== undefined) this.progress(taskBytes(slot.task!));
      slot.task = undefined;
      if (--this.running === 0) this.settle.resolve();
      else if (this.source.fd !== undefined) this.dispatch(slot);
      slot.wake?.();
    }
  }

  private progress(bytes: number): void {
    this.bytesDone += bytes;
    this.options.onProgress?.(this.bytesDone, this.check.sizeBytes);
  }

  /** File mode: the slot's worker reads its next task from the archive itself. */
  private dispatch(slot: Slot): void {
    const task = this.tasks.shift();
    if (!task || this.failure) return;
    slot.task = task;
    slot.worker.postMessage(task satisfies ExtractRequest);
  }

  /**
   * Port mode: each worker is fed one task at a time, and each task's bytes are read as a range
   * of their own, straight from the store's response to the worker. The workers' reads run at
   * once (S3: one GET each, resumed where a connection broke), no range waits for an earlier
   * one, and no byte is gathered or copied on this thread. Layout 1 is one task: the store
   * reads the whole archive its fastest way.
   */
  private async feedAll(): Promise<void> {
    await Promise.all(this.slots.map((slot) => this.feedSlot(slot)));
  }

  private async feedSlot(slot: Slot): Promise<void> {
    for (let task = this.tasks.shift(); task && !this.failure; task = this.tasks.shift()) {
      slot.task = task;
      slot.worker.postMessage(task satisfies ExtractRequest);
      const start = task.pieces[0]!.offset;
      const bytes = taskBytes(task);
      const stream = await this.source.read({ start, end: start + bytes - 1 }, this.abort.signal);
      let received = 0;
      await eachChunk(stream, async (chunk) => {
        received += chunk.length;
        if (received > bytes) throw this.mismatch(`more than the expected ${bytes} bytes at offset ${start}`);
        if (!this.failure) await this.send(slot, chunk);
      });
      if (this.failure) return;
      if (received !== bytes) throw this.mismatch(`${received} bytes instead of ${bytes} at offset ${start}`);
      slot.worker.postMessage({ type: 'end' } satisfies ExtractRequest);
      while (slot.task === task && !this.failure) await new Promise<void>((r) => (slot.wake = r));
    }
  }

  /** Transfers `bytes` to the slot's worker, then waits while too much is unacknowledged. */
  private async send(slot: Slot, bytes: Buffer): Promise<void> {
    const data = toTransferable(bytes);
    slot.inFlight += bytes.length;
    slot.worker.postMessage({ type: 'chunk', data } satisfies ExtractRequest, [data]);
    while (slot.inFlight >= MAX_BYTES_IN_FLIGHT && !this.failure)
      await new Promise<void>((r) => (slot.wake = r));
  }

  /** A local archive must have the size the manifest says; a stream is counted as it arrives. */
  private checkLocalSize(): void {
    if (this.source.fd === undefined) return;
    const { size } = fstatSync(this.source.fd);
    if (size !== this.check.sizeBytes)
      throw this.mismatch(`${size} bytes instead of ${this.check.sizeBytes}`);
  }

  private async pieces(): Promise<PlacedPiece[]> {
    const { check } = this;
    if (check.sizeBytes === 0) throw this.mismatch('the archive is empty');
    if (check.layout === 1)
      return [{ kind: 'entries', offset: 0, bytes: check.sizeBytes, sha256: check.sha256, last: true }];
    const { sizeBytes, indexBytes } = check;
    if (indexBytes > MAX_INDEX_BYTES || indexBytes >= sizeBytes)
      throw this.mismatch(`an index of ${indexBytes} bytes`);
    const stream = await this.source.read(
      { start: sizeBytes - indexBytes, end: sizeBytes - 1 },
      this.abort.signal,
    );
    const frame = Buffer.concat(await stream.toArray());
    if (frame.length !== indexBytes)
      throw this.mismatch(`an index of ${frame.length} bytes instead of ${indexBytes}`);
    const sha256 = createHash('sha256').update(frame).digest('hex');
    if (sha256 !== check.sha256) throw this.mismatch(`index sha256 ${sha256} instead of ${check.sha256}`);
    this.progress(frame.length);
    try {
      const data = skippableFrameData(frame);
      if (!data) throw new Error('the index is not in a skippable frame');
      return placePieces(JSON.parse(data.toString('utf8')), sizeBytes, indexBytes);
    } catch (err) {
      throw new GitMirrorError(
        'SNAPSHOT_CORRUPT',
        `${this.label} has an invalid index: ${(err as Error).message}`,
      );
    }
  }

  /**
   * Each stored file is judged like a tar entry and created empty before any worker starts,
   * so its content pieces can be written in any order, by any worker.
   */
  private async createStoredFiles(pieces: PlacedPiece[]): Promise<void> {
    const totals = new BigInt64Array(this.totals);
    for (const piece of pieces) {
      if (piece.kind !== 'file') continue;
      classifyEntry(piece.path, 'File');
      const segments = safeSegments(piece.path);
      if (segments.length === 0) throw unsafe(piece.path, 'a file cannot replace the archive root');
      const { maxEntries, maxEntryBytes, maxTotalBytes } = this.limits;
      totals[0]! += 1n;
      totals[1]! += BigInt(piece.size);
      if (totals[0]! > BigInt(maxEntries))
        throw unsafe(piece.path, `archive has more than ${maxEntries} entries`);
      if (piece.size > maxEntryBytes) throw unsafe(piece.path, `larger than ${maxEntryBytes} bytes`);
      if (totals[1]! > BigInt(maxTotalBytes))
        throw unsafe(piece.path, `archive expands beyond ${maxTotalBytes} bytes`);
      const path = join(this.targetDir, ...segments);
      try {
        await mkdir(dirname(path), { recursive: true, mode: 0o755 });
        await (await open(path, NEW_FILE, sanitizedMode('file', piece.mode))).close();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ELOOP')
          throw unsafe(piece.path, `conflicts with an earlier entry (${code})`);
        if (code === 'ENAMETOOLONG')
          throw unsafe(piece.path, 'path too long for the file system under the target');
        throw err;
      }
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = isGitMirrorError(err)
      ? err
      : new GitMirrorError('RESTORE_FAILED', `extracting ${this.label} failed: ${err.message}`, {
          cause: err,
        });
    Atomics.store(new Int32Array(this.control), 0, 1);
    this.abort.abort();
    for (const slot of this.slots) {
      slot.worker.postMessage({ type: 'stop' });
      slot.wake?.();
    }
    this.settle.reject(this.failure);
  }

  /** Resolves once no worker can write anymore: each stops between two writes, or is terminated. */
  private async stopWorkers(): Promise<void> {
    this.stopping = true;
    Atomics.store(new Int32Array(this.control), 0, 1);
    for (const slot of this.slots) slot.worker.postMessage({ type: 'stop' });
    await Promise.all(
      this.slots.map(async (slot) => {
        const timer = setTimeout(() => void slot.worker.terminate(), STOP_GRACE_MS);
        await slot.stopped;
        clearTimeout(timer);
        await slot.worker.terminate();
      }),
    );
  }

  private mismatch(detail: string): GitMirrorError {
    return new GitMirrorError('SNAPSHOT_CORRUPT', `${this.label} does not match its manifest: ${detail}`);
  }
}

/**
 * Calls `each` for every chunk as the stream delivered it, one at a time, the stream paused
 * meanwhile. (Async iteration would hand over everything buffered as one concatenated copy.)
 */
function eachChunk(stream: Readable, each: (chunk: Buffer) => Promise<void>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      stream.pause();
      each(chunk).then(
        () => stream.resume(),
        (err: unknown) => {
          reject(err);
          stream.destroy();
        },
      );
    });
    stream.once('end', resolve);
    stream.once('error', reject);
    stream.once('close', () => reject(new GitMirrorError('ABORTED', 'the archive read was closed')));
  }).finally(() => stream.destroy());
}

function taskBytes(task: ExtractTask): number {
  return task.pieces.reduce((sum, p) => sum + p.bytes, 0);
}

/** Consecutive pieces, gathered until a run holds PIECE_BYTES: one read, one hand-over. */
function groupIntoTasks(pieces: PlacedPiece[]): ExtractTask[] {
  const tasks: ExtractTask[] = [];
  let current: PlacedPiece[] = [];
  let bytes = 0;
  for (const piece of pieces) {
    current.push(piece);
    bytes += piece.bytes;
    if (bytes >= PIECE_BYTES) {
      tasks.push({ type: 'task', id: tasks.length, pieces: current });
      current = [];
      bytes = 0;
    }
  }
  if (current.length > 0) tasks.push({ type: 'task', id: tasks.length, pieces: current });
  return tasks;
}

/**
 * Verifies and unpacks an archive into `targetDir`, a fresh empty directory the caller
 * made. Layout 2 is read as the index says, pieces in parallel; layout 1 (and any plain
 * `tar.zst`) as one stream. Sizes are checked as bytes arrive, each piece's sha256 before it
 * counts; the result counts only if this resolves: on any error the directory holds a
 * partial tree, no worker writes to it anymore, and the caller must remove it.
 */
export async function restoreArchive(
  source: ArchiveSource,
  targetDir: string,
  check: ArchiveCheck,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  return new RestoreRun(source, targetDir, check, options).run();
}

/**
 * `restoreArchive` of one stream read start to end: the whole archive, checked against one
 * size and sha256 (an archive of layout 1, or any plain `tar.zst`).
 */
export async function extractArchive(
  stream: Readable,
  targetDir: string,
  options: ExtractOptions & { expectedSize: number; expectedSha256: string },
): Promise<ExtractResult> {
  let used = false;
  const source: ArchiveSource = {
    read: async () => {
      if (used) throw new Error('the archive stream can be read only once');
      used = true;
      return stream;
    },
  };
  try {
    return await restoreArchive(
      source,
      targetDir,
      { layout: 1, sizeBytes: options.expectedSize, sha256: options.expectedSha256 },
      options,
    );
  } finally {
    if (!used) stream.destroy();
  }
}
