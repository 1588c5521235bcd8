import type { Stats } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { create, type ReadEntry } from 'tar';
import { CompressStream } from 'zstd-napi';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import {
  type AckMessage,
  type ChunkMessage,
  type EndMessage,
  errorMessage,
  MAX_BYTES_IN_FLIGHT,
  toTransferable,
} from './worker-protocol.ts';

/**
 * Worker thread: tar the mirror directory and zstd-compress it, posting compressed chunks
 * to the digest relay, which hashes them and passes them on to the main thread. zstd-napi
 * compresses synchronously on the calling thread, so doing this on the main thread would
 * stall every request for the length of a snapshot. Acknowledgements come from the main
 * thread, as it consumes the bytes.
 */

export interface ArchiveJob {
  mirrorDir: string;
  level: number;
  /** zstd's own compression threads, besides this worker. */
  threads: number;
  /** The digest relay's input: compressed chunks, then `{ type: 'end' }`. */
  output: MessagePort;
}

const port = parentPort!;
const job = workerData as ArchiveJob;
let inFlight = 0;
let wake: (() => void) | undefined;

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
    const data = toTransferable(chunk);
    job.output.postMessage({ type: 'chunk', data } satisfies ChunkMessage, [data]);
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
  // Piped directly: wrapping node-tar's stream in Readable.from copied every byte once more.
  pack.on('error', (err: unknown) => compress.destroy(err as Error));
  pack.pipe(compress);
  await pipeline(compress, sendChunks);
  if (unsupported.length > 0) {
    throw new GitMirrorError(
      'SNAPSHOT_UNSAFE_ENTRY',
      `mirror contains ${unsupported.length} entries that are neither files nor directories (first: ${unsupported[0]})`,
    );
  }
  job.output.postMessage({ type: 'end' } satisfies EndMessage);
}

run().catch((err: unknown) => port.postMessage(errorMessage(err, 'PROCESS_FAILED')));
