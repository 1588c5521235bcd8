import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readSync, readvSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { Compressor } from 'zstd-napi';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import { isStoredFile, PIECE_BYTES, paddedSize } from './archive-layout.ts';
import { portableMode, type TarEntryInfo, tarHeader } from './tar-header.ts';
import { errorMessage, MAX_BYTES_IN_FLIGHT, toTransferable } from './worker-protocol.ts';
import { layOutRawFrame, rawFrameBytes } from './zstd-frames.ts';

/**
 * Worker thread of the archive writer (layout 2, `archive-layout.ts`). One worker lists the
 * mirror and later writes the compressed entries; every worker writes the content pieces of
 * stored files it is given. Pieces go straight to their offset in the archive file, or, when
 * the archive is a stream, to the main thread as transferred buffers. File I/O is
 * synchronous: this thread exists to do it. zstd-napi compresses on the calling thread too,
 * which is why none of this runs on the main thread.
 */

export interface CreateWorkerData {
  /** The archive file, opened by the main thread; absent when pieces go back as messages. */
  fd?: number;
  level: number;
  /** zstd's own compression threads for the entries. */
  threads: number;
}

export interface StoredFile {
  /** Relative path, as in the tar. */
  path: string;
  size: number;
  mode: number;
  /** The entry's tar header, to go in its own raw frame. */
  header: Uint8Array;
}

export type CreateRequest =
  | { type: 'list'; mirrorDir: string }
  | {
      type: 'content';
      id: number;
      file: string;
      fileOffset: number;
      fileSize: number;
      length: number;
      offset: number;
    }
  | { type: 'entries'; offset: number }
  | { type: 'ack'; bytes: number };

export type CreateReply =
  | { type: 'listed'; stored: StoredFile[]; unpackedBytes: number; entries: number }
  | { type: 'content'; id: number; sha256: string; frame?: ArrayBuffer }
  | { type: 'frame'; data: ArrayBuffer }
  | { type: 'entries'; pieces: { bytes: number; sha256: string }[] };

const port = parentPort!;
const job = workerData as CreateWorkerData;
/** End of a tar archive: two zero blocks. */
const END_OF_ARCHIVE = Buffer.alloc(1024);

/** `*.lock` files are git's in-progress writes: restoring one would wedge the mirror. */
function isLockFile(name: string): boolean {
  return name.endsWith('.lock');
}

/** Every directory and file under `root`, parents before children, in name order. */
function walk(root: string): { entries: (TarEntryInfo & { abs: string })[]; unsupported: string[] } {
  const entries: (TarEntryInfo & { abs: string })[] = [];
  const unsupported: string[] = [];
  const visit = (dir: string, prefix: string) => {
    const names = readdirSync(dir)
      .filter((name) => !isLockFile(name))
      .sort();
    for (const name of names) {
      const abs = join(dir, name);
      const path = prefix + name;
      const stat = lstatSync(abs);
      const info = { abs, path, mode: stat.mode, size: stat.size, mtime: stat.mtime };
      // Only files and directories: the extractor refuses links and devices, so archiving
      // one would publish a snapshot nobody can restore. Better to fail here, loudly.
      if (stat.isDirectory()) {
        entries.push({ ...info, type: 'Directory', size: 0 });
        visit(abs, `${path}/`);
      } else if (stat.isFile()) entries.push({ ...info, type: 'File' });
      else unsupported.push(path);
    }
  };
  visit(root, '');
  return { entries, unsupported };
}

let pending: (TarEntryInfo & { abs: string })[] = [];

function list(mirrorDir: string): CreateReply {
  const { entries, unsupported } = walk(mirrorDir);
  if (unsupported.length > 0)
    throw new GitMirrorError(
      'SNAPSHOT_UNSAFE_ENTRY',
      `mirror contains ${unsupported.length} entries that are neither files nor directories (first: ${unsupported[0]})`,
    );
  const stored: StoredFile[] = [];
  // The archive root first, as `tar -C dir .` writes it: the entries are never empty.
  pending = [
    {
      abs: mirrorDir,
      path: '.',
      type: 'Directory',
      mode: lstatSync(mirrorDir).mode,
      size: 0,
      mtime: new Date(0),
    },
  ];
  // What `tar -x` of this archive writes, counted from the listing: the manifest tells a
  // restore how much disk it needs before it starts.
  let unpackedBytes = tarHeader(pending[0]!).length + END_OF_ARCHIVE.length;
  for (const entry of entries) {
    const header = tarHeader(entry);
    unpackedBytes += header.length + paddedSize(entry.size);
    if (entry.type === 'File' && isStoredFile(entry.path, entry.size))
      stored.push({ path: entry.path, size: entry.size, mode: portableMode(entry.mode, false), header });
    else pending.push(entry);
  }
  return { type: 'listed', stored, unpackedBytes, entries: entries.length + 1 };
}

/** Reads exactly the bytes `views` cover, from `position` on; a file that got shorter fails. */
function readFully(fd: number, views: Buffer[], position: number, file: string): void {
  let rest = views;
  let at = position;
  while (rest.length > 0) {
    let n = readvSync(fd, rest, at);
    if (n === 0) throw new GitMirrorError('PROCESS_FAILED', `${file} got shorter while it was archived`);
    at += n;
    while (rest.length > 0 && n >= rest[0]!.length) n -= rest.shift()!.length;
    if (n > 0) rest = [rest[0]!.subarray(n), ...rest.slice(1)];
  }
}

let frameBuffer: Buffer | undefined;

function writeAt(data: Uint8Array, offset: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(job.fd!, data, done, data.length - done, offset + done);
}

/** One content piece: `length` payload bytes (the file's, then zeros) as a raw frame. */
function content(request: Extract<CreateRequest, { type: 'content' }>): CreateReply {
  const size = rawFrameBytes(request.length);
  // Reused when it goes to a file; a piece sent to the main thread is handed over instead.
  if (job.fd === undefined || !frameBuffer || frameBuffer.length < size)
    frameBuffer = Buffer.allocUnsafe(size);
  const frame = frameBuffer.subarray(0, size);
  const gaps = layOutRawFrame(frame, request.length);
  const fromFile = Math.min(request.length, request.fileSize - request.fileOffset);
  const views: Buffer[] = [];
  let covered = 0;
  for (const gap of gaps) {
    const take = Math.min(gap.length, fromFile - covered);
    if (take > 0) views.push(gap.subarray(0, take));
    if (take < gap.length) gap.fill(0, Math.max(take, 0));
    covered += gap.length;
  }
  const fd = openSync(request.file, 'r');
  try {
    readFully(fd, views, request.fileOffset, request.file);
  } finally {
    closeSync(fd);
  }
  const sha256 = createHash('sha256').update(frame).digest('hex');
  if (job.fd !== undefined) {
    writeAt(frame, request.offset);
    return { type: 'content', id: request.id, sha256 };
  }
  const transferable = toTransferable(frame);
  return { type: 'content', id: request.id, sha256, frame: transferable };
}

/**
 * The entries: tar headers and file contents gathered into a buffer, each PIECE_BYTES of
 * it compressed as one frame; a piece ends at the first entry boundary past PIECE_BYTES,
 * and the last one with the end-of-archive marker.
 */
class EntriesWriter {
  private readonly compressor = new Compressor();
  private readonly input = Buffer.allocUnsafe(PIECE_BYTES);
  private filled = 0;
  private offset: number;
  private pieceBytes = 0;
  private pieceInput = 0;
  private hash = createHash('sha256');
  readonly pieces: { bytes: number; sha256: string }[] = [];
  private inFlight = 0;
  private wake: (() => void) | undefined;

  constructor(offset: number) {
    this.offset = offset;
    this.compressor.setParameters({
      compressionLevel: job.level,
      nbWorkers: job.threads,
      checksumFlag: true,
    });
  }

  acked(bytes: number): void {
    this.inFlight -= bytes;
    this.wake?.();
  }

  async add(entry: TarEntryInfo & { abs: string }): Promise<void> {
    await this.append(tarHeader(entry));
    if (entry.type === 'File' && entry.size > 0) await this.appendFile(entry);
    if (this.pieceInput >= PIECE_BYTES) await this.endPiece();
  }

  async finish(): Promise<void> {
    await this.append(END_OF_ARCHIVE);
    await this.endPiece();
  }

  private async append(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.input.length - this.filled);
      this.input.set(bytes.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === this.input.length) await this.flushFrame();
    }
  }

  /** The file's bytes and its padding, read straight into the input buffer. */
  private async appendFile(entry: TarEntryInfo & { abs: string }): Promise<void> {
    const fd = openSync(entry.abs, 'r');
    try {
      let position = 0;
      while (position < entry.size) {
        const want = Math.min(entry.size - position, this.input.length - this.filled);
        const n = readSync(fd, this.input, this.filled, want, position);
        if (n === 0)
          throw new GitMirrorError('PROCESS_FAILED', `${entry.abs} got shorter while it was archived`);
        position += n;
        this.filled += n;
        if (this.filled === this.input.length) await this.flushFrame();
      }
    } finally {
      closeSync(fd);
    }
    await this.append(Buffer.alloc(paddedSize(entry.size) - entry.size));
  }

  private async flushFrame(): Promise<void> {
    if (this.filled === 0) return;
    const frame = this.compressor.compress(this.input.subarray(0, this.filled));
    this.pieceInput += this.filled;
    this.filled = 0;
    this.hash.update(frame);
    this.pieceBytes += frame.length;
    if (job.fd !== undefined) {
      writeAt(frame, this.offset);
    } else {
      while (this.inFlight >= MAX_BYTES_IN_FLIGHT)
        await new Promise<void>((resolve) => (this.wake = resolve));
      this.inFlight += frame.length;
      const data = toTransferable(frame);
      port.postMessage({ type: 'frame', data } satisfies CreateReply, [data]);
    }
    this.offset += frame.length;
  }

  private async endPiece(): Promise<void> {
    await this.flushFrame();
    this.pieces.push({ bytes: this.pieceBytes, sha256: this.hash.digest('hex') });
    this.hash = createHash('sha256');
    this.pieceBytes = 0;
    this.pieceInput = 0;
  }
}

let entriesWriter: EntriesWriter | undefined;

async function entries(offset: number): Promise<CreateReply> {
  entriesWriter = new EntriesWriter(offset);
  for (const entry of pending) await entriesWriter.add(entry);
  await entriesWriter.finish();
  return { type: 'entries', pieces: entriesWriter.pieces };
}

async function handle(request: CreateRequest): Promise<CreateReply | undefined> {
  switch (request.type) {
    case 'list':
      return list(request.mirrorDir);
    case 'content':
      return content(request);
    case 'entries':
      return entries(request.offset);
    case 'ack':
      entriesWriter?.acked(request.bytes);
      return undefined;
  }
}

port.on('message', (request: CreateRequest) => {
  handle(request).then(
    (reply) => {
      if (!reply) return;
      const transfer = reply.type === 'content' && reply.frame ? [reply.frame] : [];
      port.postMessage(reply, transfer);
    },
    (err: unknown) => port.postMessage(errorMessage(err, 'PROCESS_FAILED')),
  );
});
