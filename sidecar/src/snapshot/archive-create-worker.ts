import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { create, type ReadEntry } from 'tar';
import { CompressStream } from 'zstd-napi';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import {
  type AckMessage,
  type ChunkMessage,
  errorMessage,
  MAX_BYTES_IN_FLIGHT,
  toTransferable,
} from './worker-protocol.ts';

/**
 * Worker thread: tar the mirror directory and zstd-compress it, posting compressed chunks
 * to the main thread. zstd-napi compresses synchronously on the calling thread, so doing
 * this on the main thread would stall every request for the length of a snapshot.
 */

export interface ArchiveJob {
  mirrorDir: string;
  level: number;
  /** zstd's own compression threads, besides this worker. */
  threads: number;
}

const port = parentPort!;
const job = workerData as ArchiveJob;
let inFlight = 0;
let wake: (() => void) | undefined;
// Hashed here rather than on the main thread: at S3 speeds sha256 would cost the main
// thread a core-second per GB.
const hash = createHash('sha256');
let sizeBytes = 0;

port.on('message', (message: AckMessage) => {
  inFlight -= message.bytes;
  wake?.();
});

/** `*.lock` files are git's in-progress writes: restoring one would wedge the mirror. */
function isLockFile(path: string): boolean {
  return basename(path).endsWith('.lock');
}

async function sendChunks(source: AsyncIterable<Buffer>): Promise<void> {
  for await (const chunk of source) {
    while (inFlight >= MAX_BYTES_IN_FLIGHT) await new Promise<void>((resolve) => (wake = resolve));
    inFlight += chunk.length;
    hash.update(chunk);
    sizeBytes += chunk.length;
    const data = toTransferable(chunk);
    port.postMessage({ type: 'chunk', data } satisfies ChunkMessage, [data]);
  }
}

async function run(): Promise<void> {
  const names = (await readdir(job.mirrorDir)).filter((name) => !isLockFile(name)).sort();
  const unsupported: string[] = [];
  // Only files and directories: the extractor refuses links and devices, so archiving one
  // would publish a snapshot nobody can restore. Better to fail here, loudly.
  const keep = (path: string, stat: Stats | ReadEntry) => {
    if (isLockFile(path)) return false;
    if ('isFile' in stat && (stat.isFile() || stat.isDirectory())) return true;
    unsupported.push(path);
    return false;
  };
  const pack = create({ cwd: job.mirrorDir, portable: true, strict: true, filter: keep }, names);
  const compress = new CompressStream({
    compressionLevel: job.level,
    nbWorkers: job.threads,
    checksumFlag: true,
  });
  await pipeline(Readable.from(pack), compress, sendChunks);
  if (unsupported.length > 0) {
    throw new GitMirrorError(
      'SNAPSHOT_UNSAFE_ENTRY',
      `mirror contains ${unsupported.length} entries that are neither files nor directories (first: ${unsupported[0]})`,
    );
  }
  port.postMessage({ type: 'end', digest: { sizeBytes, sha256: hash.digest('hex') } });
}

run().catch((err: unknown) => port.postMessage(errorMessage(err, 'PROCESS_FAILED')));
