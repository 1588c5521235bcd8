import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { Parser, type ReadEntry } from 'tar';
import { DecompressStream } from 'zstd-napi';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import {
  classifyEntry,
  type ExtractLimits,
  safeSegments,
  sanitizedMode,
  unsafe,
} from './tar-entry-policy.ts';
import { type AckMessage, type ChunkMessage, type EndMessage, errorMessage } from './worker-protocol.ts';

/**
 * Worker thread: hash the chunks the main thread sends, zstd-decompress them and unpack the
 * tar into the target directory, judging every entry before writing it. The extraction is
 * reported done only after the tar has ended and the sha256 has matched. Files are created with
 * O_EXCL | O_NOFOLLOW inside a directory the caller just made, and no link is ever created,
 * so nothing can be written outside it.
 */

export interface ExtractJob {
  targetDir: string;
  limits: ExtractLimits;
  /** sha256 the compressed stream must have; checked here, where every byte passes anyway. */
  expectedSha256: string;
  /** Names the archive in error messages. */
  label: string;
}

type Inbound = ChunkMessage | EndMessage | { type: 'abort' };

const port = parentPort!;
const job = workerData as ExtractJob;
const FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/** fs errors that mean two entries collide (a duplicate, a file where a directory is). */
const CONFLICTS = new Set(['EEXIST', 'ENOTDIR', 'EISDIR', 'ELOOP']);
const STOP_WAIT_MS = 5_000;

const decompress = new DecompressStream();
const parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: 1024 * 1024 });
const hash = createHash('sha256');
const pending = new Set<Promise<void>>();
/** Entries being written: once decompression stops they would wait for data forever. */
const active = new Set<ReadEntry>();
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

/** Stops reading, lets writes in progress finish, then reports; later errors are echoes. */
async function stop(err: unknown, reply: 'error' | 'closed'): Promise<void> {
  if (stopped) return;
  stopped = true;
  decompress.destroy();
  for (const entry of active) entry.destroy();
  // Bounded: a write stuck in the kernel must not keep the error from being reported.
  await Promise.race([Promise.allSettled([...pending]), sleep(STOP_WAIT_MS)]);
  port.postMessage(reply === 'error' ? errorMessage(err, 'RESTORE_FAILED') : { type: 'closed' });
}

function checkLimits(entry: ReadEntry): void {
  const { maxEntries, maxEntryBytes, maxTotalBytes } = job.limits;
  if (++entries > maxEntries) throw unsafe(entry.path, `archive has more than ${maxEntries} entries`);
  if (entry.size > maxEntryBytes) throw unsafe(entry.path, `larger than ${maxEntryBytes} bytes`);
  totalBytes += entry.size;
  if (totalBytes > maxTotalBytes) throw unsafe(entry.path, `archive expands beyond ${maxTotalBytes} bytes`);
}

async function writeEntry(entry: ReadEntry): Promise<void> {
  const kind = classifyEntry(entry.path, entry.type);
  const segments = safeSegments(entry.path);
  checkLimits(entry);
  if (segments.length === 0 && kind === 'file')
    throw unsafe(entry.path, 'a file cannot replace the archive root');
  const path = join(job.targetDir, ...segments);
  const mode = sanitizedMode(kind, entry.mode);
  try {
    if (kind === 'directory') {
      await mkdir(path, { recursive: true, mode });
      entry.resume();
      return;
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    const handle = await open(path, FILE_FLAGS, mode);
    active.add(entry);
    try {
      for await (const chunk of entry) {
        await handle.write(chunk as Buffer);
        // Minipass never settles a read begun after destroy(), so do not begin one.
        if (stopped) break;
      }
    } finally {
      active.delete(entry);
      await handle.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code && CONFLICTS.has(code)) throw unsafe(entry.path, `conflicts with an earlier entry (${code})`);
    throw err;
  }
}

parser.on('entry', (entry: ReadEntry) => {
  if (stopped) {
    entry.resume();
    return;
  }
  // Not awaiting stop(): it waits for pending tasks, this one included.
  const task = writeEntry(entry).catch((err: unknown) => {
    entry.resume();
    void stop(err, 'error');
  });
  pending.add(task);
  void task.finally(() => pending.delete(task));
});
parser.on(
  'ignoredEntry',
  (entry: ReadEntry) => void stop(unsafe(entry.path, 'oversized metadata header'), 'error'),
);
parser.on('error', (err: unknown) => void stop(corrupt(err), 'error'));
decompress.on('error', (err: unknown) => void stop(corrupt(err), 'error'));
parser.on('end', () => {
  void Promise.all([...pending]).then(() => {
    if (!stopped) port.postMessage({ type: 'done', entries, bytes: totalBytes });
  });
});
decompress.pipe(parser as unknown as NodeJS.WritableStream);

port.on('message', (message: Inbound) => {
  if (message.type === 'chunk') {
    const chunk = Buffer.from(message.data);
    hash.update(chunk);
    // Acknowledged once the decompressor takes it, which waits while the tar side is busy.
    decompress.write(chunk, () =>
      port.postMessage({ type: 'ack', bytes: chunk.length } satisfies AckMessage),
    );
  } else if (message.type === 'end') {
    const sha256 = hash.digest('hex');
    if (sha256 === job.expectedSha256) decompress.end();
    else void stop(mismatch(`sha256 ${sha256} instead of ${job.expectedSha256}`), 'error');
  } else {
    void stop(undefined, 'closed');
  }
});
