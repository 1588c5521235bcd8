import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { Parser, type ReadEntry } from 'tar';
import { DecompressStream } from 'zstd-napi';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { PlacedPiece } from './archive-layout.ts';
import {
  classifyEntry,
  type ExtractLimits,
  safeSegments,
  sanitizedMode,
  unsafe,
} from './tar-entry-policy.ts';
import { errorMessage } from './worker-protocol.ts';
import { RawFrameReader, rawPayloadBytes } from './zstd-frames.ts';

/**
 * Worker thread of the restore: it is handed tasks, each a run of consecutive pieces of
 * the archive (`archive-layout.ts`; an archive of layout 1 is one piece of entries), and
 * reads their bytes itself from the archive file or receives them from the main thread.
 * Every piece's bytes are hashed as they pass and the piece counts only once its sha256
 * matched. Entries are decompressed and unpacked with node-tar, each judged by the entry
 * policy before anything is written; a stored file's content goes straight to its offset in
 * the file the main thread created. Files are opened with O_NOFOLLOW inside a directory the
 * caller just made, new ones with O_EXCL, and no link is ever created, so nothing can be
 * written outside it.
 *
 * File I/O is synchronous on purpose: this thread exists to do it, and blocking here blocks
 * nobody else. Asynchronous writes cost a thread-pool hop and a promise per chunk, and left
 * a restore thread idle a third of the time.
 */

export interface ExtractWorkerData {
  targetDir: string;
  limits: ExtractLimits;
  label: string;
  /** The archive, opened by the main thread, for positioned reads; absent: bytes come as messages. */
  fd?: number;
  /** Int32[0]: set to 1 by anyone to stop every worker of this restore. */
  control: SharedArrayBuffer;
  /** BigInt64 [entries, bytes]: the totals of all workers, for the limits. */
  totals: SharedArrayBuffer;
}

export interface ExtractTask {
  type: 'task';
  id: number;
  pieces: PlacedPiece[];
}

export type ExtractRequest = ExtractTask | { type: 'chunk'; data: ArrayBuffer } | { type: 'end' };

export type ExtractReply =
  | { type: 'ack'; bytes: number }
  | { type: 'done'; id: number }
  | { type: 'stopped' };

const port = parentPort!;
const job = workerData as ExtractWorkerData;
const control = new Int32Array(job.control);
const totals = new BigInt64Array(job.totals);
const READ_BYTES = 1024 * 1024;
const FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/** fs errors that mean two entries collide (a duplicate, a file where a directory is). */
const CONFLICTS = new Set(['EEXIST', 'ENOTDIR', 'EISDIR', 'ELOOP']);
/** Padding allowed after the end-of-archive marker; tar's own is at most a 10 KiB record. */
const MAX_TRAILING_BYTES = 1024 * 1024;

/** Set once this worker stops for good (an error, or the restore being abandoned). */
let stopped = false;
const openFds = new Set<number>();

function stopRequested(): boolean {
  return stopped || Atomics.load(control, 0) === 1;
}

function corrupt(err: unknown): GitMirrorError {
  const detail = err instanceof Error ? err.message : String(err);
  return new GitMirrorError('SNAPSHOT_CORRUPT', `archive is not a valid tar.zst: ${detail}`);
}

function mismatch(detail: string): GitMirrorError {
  return new GitMirrorError('SNAPSHOT_CORRUPT', `${job.label} does not match its manifest: ${detail}`);
}

function open(path: string, flags: number, mode?: number): number {
  const fd = openSync(path, flags, mode);
  openFds.add(fd);
  return fd;
}

function close(fd: number): void {
  openFds.delete(fd);
  closeSync(fd);
}

function writeAll(fd: number, bytes: Uint8Array, position: number | null): void {
  let done = 0;
  while (done < bytes.length)
    done += writeSync(fd, bytes, done, bytes.length - done, position === null ? null : position + done);
}

function conflictOrSame(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENAMETOOLONG') return unsafe(path, 'path too long for the file system under the target');
  return code && CONFLICTS.has(code) ? unsafe(path, `conflicts with an earlier entry (${code})`) : err;
}

function countEntry(path: string, size: number): void {
  const { maxEntries, maxEntryBytes, maxTotalBytes } = job.limits;
  if (Atomics.add(totals, 0, 1n) + 1n > BigInt(maxEntries))
    throw unsafe(path, `archive has more than ${maxEntries} entries`);
  if (size > maxEntryBytes) throw unsafe(path, `larger than ${maxEntryBytes} bytes`);
  if (Atomics.add(totals, 1, BigInt(size)) + BigInt(size) > BigInt(maxTotalBytes))
    throw unsafe(path, `archive expands beyond ${maxTotalBytes} bytes`);
}

/** What one kind of piece does with its bytes; `end` runs only after the sha256 matched. */
interface PieceHandler {
  /** True when `write` may keep a reference to the bytes it is given. */
  readonly keepsBytes: boolean;
  write(bytes: Buffer): void | Promise<void>;
  end(): void | Promise<void>;
  /** Stop early: close what is open. */
  abandon(): void;
}

/**
 * Whole tar entries, zstd-compressed: decompressed and unpacked one entry at a time. Only
 * the last piece may hold the end-of-archive marker; after it, at most tar's padding.
 */
class EntriesHandler implements PieceHandler {
  readonly keepsBytes = true;
  private readonly decompress = new DecompressStream();
  private readonly parser = new Parser({
    strict: true,
    zstd: false,
    brotli: false,
    maxMetaEntrySize: 1024 * 1024,
  });
  private readonly last: boolean;
  private failure: unknown;
  private readonly finished: Promise<void>;
  private fd: number | undefined;

  constructor(last: boolean) {
    this.last = last;
    this.finished = new Promise<void>((resolve) => {
      this.parser.on('end', resolve);
      this.parser.on('error', (err: unknown) => this.fail(corrupt(err)));
      this.decompress.on('error', (err: unknown) => this.fail(corrupt(err)));
      this.parser.on('close', resolve);
    });
    this.parser.on('entry', (entry: ReadEntry) => this.onEntry(entry));
    // node-tar skips (rather than emits) entries it cannot represent: sparse files, volume
    // headers, unknown types, and metadata headers over maxMetaEntrySize.
    this.parser.on('ignoredEntry', (entry: ReadEntry) =>
      this.fail(
        unsafe(
          entry.path,
          entry.meta ? 'oversized metadata header' : `entry type ${entry.type} is not allowed`,
        ),
      ),
    );
    this.parser.on('eof', () => this.onEndOfArchive());
    this.decompress.pipe(this.parser as unknown as NodeJS.WritableStream);
  }

  write(bytes: Buffer): Promise<void> {
    this.check();
    // Resolved once the decompressor took the bytes, which waits while the tar side is busy.
    return new Promise<void>((resolve) => this.decompress.write(bytes, () => resolve())).then(() =>
      this.check(),
    );
  }

  async end(): Promise<void> {
    this.check();
    this.decompress.end();
    await this.finished;
    this.check();
    this.closeFile();
  }

  abandon(): void {
    this.decompress.destroy();
    try {
      this.closeFile();
    } catch {
      // Stopping already; a failing close is an echo of whatever stopped us.
    }
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    this.decompress.destroy();
    this.parser.emit('close');
  }

  private closeFile(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    close(fd);
  }

  private onEntry(entry: ReadEntry): void {
    if (this.failure !== undefined || stopRequested()) {
      entry.resume();
      return;
    }
    try {
      this.beginEntry(entry);
    } catch (err) {
      entry.resume();
      this.fail(err);
      return;
    }
    const fd = this.fd;
    if (fd === undefined) {
      entry.resume();
      return;
    }
    // Listeners, not async iteration: the parser hands each chunk over synchronously, so the
    // bytes go straight to the kernel with no queue and no promise in between.
    entry.on('data', (chunk: Buffer) => {
      if (this.failure !== undefined) return;
      try {
        writeAll(fd, chunk, null);
      } catch (err) {
        this.fail(err);
      }
    });
    entry.on('end', () => {
      if (this.fd !== fd) return;
      try {
        this.closeFile();
      } catch (err) {
        this.fail(err);
      }
    });
  }

  /** Creates the entry's directory or opens its file; the file's bytes arrive as 'data'. */
  private beginEntry(entry: ReadEntry): void {
    const kind = classifyEntry(entry.path, entry.type);
    const segments = safeSegments(entry.path);
    countEntry(entry.path, entry.size);
    if (segments.length === 0 && kind === 'file')
      throw unsafe(entry.path, 'a file cannot replace the archive root');
    const path = join(job.targetDir, ...segments);
    const mode = sanitizedMode(kind, entry.mode);
    try {
      if (kind === 'directory') {
        mkdirSync(path, { recursive: true, mode });
        return;
      }
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
      this.fd = open(path, FILE_FLAGS, mode);
    } catch (err) {
      throw conflictOrSame(err, entry.path);
    }
  }

  /**
   * After the end-of-archive marker node-tar parses nothing more but appends every later
   * chunk to one buffer, which is quadratic in what follows: a 2 KB archive with 64 MiB of
   * zeros after its marker took 10 s. So the parser is fed no more, and what follows is
   * bounded: tar pads its last record (GNU tar: to 10 KiB), and like tar we ignore that.
   * A marker before the last piece would end `tar -x` there: refused.
   */
  private onEndOfArchive(): void {
    if (!this.last) {
      this.fail(corrupt(new Error('end-of-archive marker before the last piece')));
      return;
    }
    this.decompress.unpipe(this.parser as unknown as NodeJS.WritableStream);
    let trailing = 0;
    this.decompress.on('data', (chunk: Buffer) => {
      trailing += chunk.length;
      if (trailing > MAX_TRAILING_BYTES)
        this.fail(corrupt(new Error('more than 1 MiB of data after the end-of-archive marker')));
    });
    this.decompress.once('end', () => this.parser.end());
    this.decompress.resume();
  }
}

/** The raw frame with a stored file's tar header: it must describe the file the index names. */
class FileHeaderHandler implements PieceHandler {
  readonly keepsBytes = false;
  private readonly piece: Extract<PlacedPiece, { kind: 'file' }>;
  private readonly header: Buffer[] = [];
  private readonly reader: RawFrameReader;

  constructor(piece: Extract<PlacedPiece, { kind: 'file' }>) {
    this.piece = piece;
    this.reader = new RawFrameReader(rawPayloadBytes(piece.bytes), (bytes) =>
      this.header.push(Buffer.from(bytes)),
    );
  }

  write(bytes: Buffer): void {
    this.reader.write(bytes);
  }

  end(): void {
    this.reader.end();
    const parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: 1024 * 1024 });
    let seen: ReadEntry | undefined;
    let problem: unknown;
    parser.on('entry', (entry: ReadEntry) => (seen ??= entry));
    parser.on('warn', (_code: string, message: string) => (problem ??= new Error(message)));
    parser.on('error', (err: unknown) => (problem ??= err));
    parser.write(Buffer.concat(this.header));
    const { path, size, mode } = this.piece;
    // The header must be all of the piece: no body bytes taken, nothing after it.
    if (problem || !seen || seen.type !== 'File' || seen.remain !== seen.size)
      throw corrupt(new Error(`the header of stored file ${JSON.stringify(path)} is not one file header`));
    if (seen.path !== path || seen.size !== size || seen.mode !== mode)
      throw corrupt(new Error(`the header of stored file ${JSON.stringify(path)} does not match the index`));
  }

  abandon(): void {}
}

/** A raw frame of a stored file's content: written at its offset, padding left out. */
class ContentHandler implements PieceHandler {
  readonly keepsBytes = false;
  private readonly fd: number;
  private readonly reader: RawFrameReader;
  private position: number;
  private readonly fileSize: number;

  constructor(piece: Extract<PlacedPiece, { kind: 'content' }>) {
    this.position = piece.at;
    this.fileSize = piece.fileSize;
    // The main thread created the file (O_EXCL) after judging its path; no link can be there.
    this.fd = open(
      join(job.targetDir, ...safeSegments(piece.path)),
      constants.O_WRONLY | constants.O_NOFOLLOW,
    );
    this.reader = new RawFrameReader(piece.length, (bytes) => this.payload(bytes));
  }

  write(bytes: Buffer): void {
    this.reader.write(bytes);
  }

  end(): void {
    this.reader.end();
    close(this.fd);
  }

  abandon(): void {
    close(this.fd);
  }

  private payload(bytes: Buffer): void {
    const inFile = Math.max(0, Math.min(bytes.length, this.fileSize - this.position));
    if (inFile > 0) writeAll(this.fd, bytes.subarray(0, inFile), this.position);
    this.position += bytes.length;
  }
}

function handlerFor(piece: PlacedPiece): PieceHandler {
  if (piece.kind === 'entries') return new EntriesHandler(piece.last);
  if (piece.kind === 'file') return new FileHeaderHandler(piece);
  return new ContentHandler(piece);
}

/** Feeds a task's bytes, in order, to its pieces, hashing each. */
class TaskCursor {
  private readonly pieces: PlacedPiece[];
  private index = -1;
  private left = 0;
  private hash: Hash | undefined;
  private handler: PieceHandler | undefined;

  constructor(pieces: PlacedPiece[]) {
    this.pieces = pieces;
  }

  /** Bytes up to the end of the current piece (or all of the next one), and whether they are kept. */
  nextRead(): { bytes: number; keeps: boolean } {
    if (this.left > 0) return { bytes: this.left, keeps: this.handler!.keepsBytes };
    const piece = this.pieces[this.index + 1];
    return { bytes: piece?.bytes ?? 0, keeps: piece?.kind === 'entries' };
  }

  /** Archive bytes still wanted by this task. */
  get remaining(): number {
    let rest = this.left;
    for (let i = this.index + 1; i < this.pieces.length; i++) rest += this.pieces[i]!.bytes;
    return rest;
  }

  async write(bytes: Buffer): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      if (this.left === 0) this.next();
      const part = bytes.subarray(at, at + Math.min(this.left, bytes.length - at));
      this.hash!.update(part);
      await this.handler!.write(part);
      this.left -= part.length;
      at += part.length;
      if (this.left === 0) await this.finishPiece();
    }
  }

  abandon(): void {
    this.handler?.abandon();
    this.handler = undefined;
  }

  private next(): void {
    const piece = this.pieces[++this.index];
    if (!piece) throw new Error('more bytes than the task has pieces');
    this.left = piece.bytes;
    this.hash = createHash('sha256');
    this.handler = handlerFor(piece);
  }

  private async finishPiece(): Promise<void> {
    const piece = this.pieces[this.index]!;
    const sha256 = this.hash!.digest('hex');
    if (sha256 !== piece.sha256) {
      const what =
        this.pieces.length === 1 && piece.offset === 0 && piece.kind === 'entries'
          ? ''
          : ` of piece at ${piece.offset}`;
      throw mismatch(`sha256 ${sha256}${what} instead of ${piece.sha256}`);
    }
    const handler = this.handler!;
    this.handler = undefined;
    await handler.end();
  }
}

/** Bytes from the main thread, in order, for the task in progress. */
const inbox: Buffer[] = [];
let inboxEnded = false;
let inboxWake: (() => void) | undefined;
const tasks: ExtractTask[] = [];
let taskWake: (() => void) | undefined;

async function nextChunk(): Promise<Buffer | undefined> {
  while (inbox.length === 0 && !inboxEnded && !stopRequested())
    await new Promise<void>((r) => (inboxWake = r));
  return inbox.shift();
}

async function runTask(task: ExtractTask): Promise<void> {
  const cursor = new TaskCursor(task.pieces);
  try {
    if (job.fd === undefined) {
      inboxEnded = false;
      for (let chunk = await nextChunk(); chunk && !stopRequested(); chunk = await nextChunk()) {
        await cursor.write(chunk);
        port.postMessage({ type: 'ack', bytes: chunk.length } satisfies ExtractReply);
      }
      if (cursor.remaining > 0 && !stopRequested()) throw mismatch('the archive ended early');
    } else {
      let position = task.pieces[0]!.offset;
      let reused: Buffer | undefined;
      while (cursor.remaining > 0 && !stopRequested()) {
        const next = cursor.nextRead();
        const want = Math.min(READ_BYTES, next.bytes);
        // Entries keep what they are given (the decompressor's input); the rest is copied
        // out at once, so one buffer serves every read.
        if (!next.keeps) reused ??= Buffer.allocUnsafe(READ_BYTES);
        const buffer = next.keeps || !reused ? Buffer.allocUnsafe(want) : reused;
        const n = readSync(job.fd, buffer, 0, want, position);
        if (n === 0) throw mismatch(`the archive ends at ${position} bytes`);
        position += n;
        await cursor.write(buffer.subarray(0, n));
      }
    }
  } catch (err) {
    cursor.abandon();
    throw err;
  }
  if (stopRequested()) cursor.abandon();
}

async function main(): Promise<void> {
  for (;;) {
    while (tasks.length === 0 && !stopRequested()) await new Promise<void>((r) => (taskWake = r));
    if (stopRequested()) break;
    const task = tasks.shift()!;
    await runTask(task);
    if (stopRequested()) break;
    port.postMessage({ type: 'done', id: task.id } satisfies ExtractReply);
  }
}

function closeAll(): void {
  for (const fd of openFds) {
    try {
      close(fd);
    } catch {
      // Stopping: nothing more to do with it.
    }
  }
}

port.on('message', (message: ExtractRequest | { type: 'stop' }) => {
  if (message.type === 'task') {
    tasks.push(message);
    taskWake?.();
  } else if (message.type === 'chunk') {
    inbox.push(Buffer.from(message.data));
    inboxWake?.();
  } else if (message.type === 'end') {
    inboxEnded = true;
    inboxWake?.();
  } else {
    // Wake whatever waits, so it sees the stop.
    taskWake?.();
    inboxWake?.();
  }
});

main().then(
  () => {
    closeAll();
    port.postMessage({ type: 'stopped' } satisfies ExtractReply);
  },
  (err: unknown) => {
    stopped = true;
    Atomics.store(control, 0, 1);
    closeAll();
    port.postMessage(errorMessage(err, 'RESTORE_FAILED'));
  },
);
