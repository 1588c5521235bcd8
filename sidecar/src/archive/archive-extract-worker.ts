import { closeSync, constants, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { Parser, type ReadEntry } from 'tar';
import { DecompressStream } from 'zstd-napi';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { DigestEndMessage } from './digest-relay-worker.ts';
import {
  classifyEntry,
  type ExtractLimits,
  safeSegments,
  sanitizedMode,
  unsafe,
} from './tar-entry-policy.ts';
import { type AckMessage, type ChunkMessage, errorMessage } from './worker-protocol.ts';

/**
 * Worker thread: zstd-decompress the chunks the digest relay passes on and unpack the tar
 * into the target directory, judging every entry before writing it. The extraction is
 * reported done only after the tar has ended and the relay's sha256 has matched. Files are
 * created with O_EXCL | O_NOFOLLOW inside a directory the caller just made, and no link is
 * ever created, so nothing can be written outside it.
 *
 * File I/O is synchronous on purpose: this thread exists to do it, and blocking here blocks
 * nobody else. Asynchronous writes cost a thread-pool hop and a promise per tar chunk, left
 * this thread idle a third of the time, and made the restore almost twice as slow as
 * `zstd -dc | tar -x` (bench: restorePipeline).
 */

export interface ExtractJob {
  targetDir: string;
  limits: ExtractLimits;
  /** sha256 the compressed stream must have, compared with what the relay computed. */
  expectedSha256: string;
  /** Chunks and the final sha256 from the digest relay worker. */
  input: MessagePort;
  /** Names the archive in error messages. */
  label: string;
}

/** From the main thread: stop now, the extraction is being abandoned. */
export type AbortMessage = { type: 'abort' };

const port = parentPort!;
const job = workerData as ExtractJob;
const FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/** fs errors that mean two entries collide (a duplicate, a file where a directory is). */
const CONFLICTS = new Set(['EEXIST', 'ENOTDIR', 'EISDIR', 'ELOOP']);
/** Padding allowed after the end-of-archive marker; tar's own is at most a 10 KiB record. */
const MAX_TRAILING_BYTES = 1024 * 1024;

const decompress = new DecompressStream();
const parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: 1024 * 1024 });
/** The file being written, if any: closed when its entry ends or the extraction stops. */
let openFd: number | undefined;
let entries = 0;
let totalBytes = 0;
let stopped = false;

function mismatch(detail: string): GitMirrorError {
  return new GitMirrorError('SNAPSHOT_CORRUPT', `${job.label} does not match its manifest: ${detail}`);
}

function corrupt(err: unknown): GitMirrorError {
  const detail = err instanceof Error ? err.message : String(err);
  return new GitMirrorError('SNAPSHOT_CORRUPT', `archive is not a valid tar.zst: ${detail}`);
}

/** Stops reading and reports; later errors are echoes of the first. */
function stop(err: unknown, reply: 'error' | 'closed'): void {
  if (stopped) return;
  stopped = true;
  decompress.destroy();
  try {
    closeOpenFile();
  } catch {
    // The error being reported is the first one; a failing close is its echo.
  }
  port.postMessage(reply === 'error' ? errorMessage(err, 'RESTORE_FAILED') : { type: 'closed' });
}

function closeOpenFile(): void {
  if (openFd === undefined) return;
  const fd = openFd;
  openFd = undefined;
  closeSync(fd);
}

function checkLimits(entry: ReadEntry): void {
  const { maxEntries, maxEntryBytes, maxTotalBytes } = job.limits;
  if (++entries > maxEntries) throw unsafe(entry.path, `archive has more than ${maxEntries} entries`);
  if (entry.size > maxEntryBytes) throw unsafe(entry.path, `larger than ${maxEntryBytes} bytes`);
  totalBytes += entry.size;
  if (totalBytes > maxTotalBytes) throw unsafe(entry.path, `archive expands beyond ${maxTotalBytes} bytes`);
}

function conflictOrSame(err: unknown, entry: ReadEntry): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENAMETOOLONG')
    return unsafe(entry.path, 'path too long for the file system under the target');
  return code && CONFLICTS.has(code) ? unsafe(entry.path, `conflicts with an earlier entry (${code})`) : err;
}

/** Creates the entry's directory or opens its file; the file's bytes arrive as 'data'. */
function beginEntry(entry: ReadEntry): void {
  const kind = classifyEntry(entry.path, entry.type);
  const segments = safeSegments(entry.path);
  checkLimits(entry);
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
    openFd = openSync(path, FILE_FLAGS, mode);
  } catch (err) {
    throw conflictOrSame(err, entry);
  }
}

function writeAll(fd: number, chunk: Buffer): void {
  let offset = 0;
  while (offset < chunk.length) offset += writeSync(fd, chunk, offset);
}

parser.on('entry', (entry: ReadEntry) => {
  if (stopped) {
    entry.resume();
    return;
  }
  try {
    beginEntry(entry);
  } catch (err) {
    entry.resume();
    stop(err, 'error');
    return;
  }
  const fd = openFd;
  if (fd === undefined) {
    entry.resume();
    return;
  }
  // Listeners, not async iteration: the parser hands each chunk over synchronously, so the
  // bytes go straight to the kernel with no queue and no promise in between.
  entry.on('data', (chunk: Buffer) => {
    if (stopped) return;
    try {
      writeAll(fd, chunk);
    } catch (err) {
      stop(err, 'error');
    }
  });
  entry.on('end', () => {
    if (openFd !== fd) return;
    try {
      closeOpenFile();
    } catch (err) {
      stop(err, 'error');
    }
  });
});
// node-tar skips (rather than emits) entries it cannot represent: sparse files, volume
// headers, unknown types, and metadata headers over maxMetaEntrySize.
parser.on('ignoredEntry', (entry: ReadEntry) =>
  stop(
    unsafe(entry.path, entry.meta ? 'oversized metadata header' : `entry type ${entry.type} is not allowed`),
    'error',
  ),
);
parser.on('eof', onEndOfArchive);
parser.on('error', (err: unknown) => stop(corrupt(err), 'error'));
decompress.on('error', (err: unknown) => stop(corrupt(err), 'error'));
parser.on('end', () => {
  if (stopped) return;
  try {
    closeOpenFile();
  } catch (err) {
    stop(err, 'error');
    return;
  }
  port.postMessage({ type: 'done', entries, bytes: totalBytes });
});
decompress.pipe(parser as unknown as NodeJS.WritableStream);

/**
 * After the end-of-archive marker node-tar parses nothing more but appends every later chunk
 * to one buffer, which is quadratic in what follows: a 2 KB archive with 64 MiB of zeros
 * after its marker took 10 s. So the parser is fed no more, and what follows is bounded:
 * tar pads its last record (GNU tar: to 10 KiB), and like tar we ignore that padding.
 */
function onEndOfArchive(): void {
  decompress.unpipe(parser as unknown as NodeJS.WritableStream);
  let trailing = 0;
  decompress.on('data', (chunk: Buffer) => {
    trailing += chunk.length;
    if (trailing > MAX_TRAILING_BYTES)
      stop(corrupt(new Error('more than 1 MiB of data after the end-of-archive marker')), 'error');
  });
  decompress.once('end', () => parser.end());
  decompress.resume();
}

job.input.on('message', (message: ChunkMessage | DigestEndMessage) => {
  if (message.type === 'chunk') {
    const chunk = Buffer.from(message.data);
    // Acknowledged once the decompressor takes it, which waits while the tar side is busy.
    decompress.write(chunk, () =>
      port.postMessage({ type: 'ack', bytes: chunk.length } satisfies AckMessage),
    );
  } else if (message.sha256 === job.expectedSha256) {
    decompress.end();
  } else {
    stop(mismatch(`sha256 ${message.sha256} instead of ${job.expectedSha256}`), 'error');
  }
});
port.on('message', (_message: AbortMessage) => stop(undefined, 'closed'));
