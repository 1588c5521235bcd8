import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';

const CHUNK = 512 * 1024;
const POOLED = 32;
/** Chunks one response keeps in flight: one being written while the next is read. */
const IN_FLIGHT = 2;

/**
 * Read buffers shared by every object download. A fresh buffer per chunk (what a file
 * ReadStream does) costs a page fault per page and, at hundreds of MB/s, makes V8 run a full
 * mark-compact every few hundred milliseconds for the external memory alone; reused buffers
 * cost neither. A buffer goes back to the pool only once the socket has taken its bytes.
 */
const pool: Buffer[] = [];

function take(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
}

function give(buffer: Buffer): void {
  if (pool.length < POOLED) pool.push(buffer);
}

/**
 * Writes bytes `start..end` (inclusive) of an open file to `out` and ends it, honouring
 * backpressure. Resolves when all is written; rejects (without ending `out`) when the file
 * is shorter than promised, a read fails or `out` is destroyed. Closes nothing.
 */
export async function writeFileRange(
  file: FileHandle,
  range: { start: number; end: number },
  out: Writable,
  onChunk?: (bytes: number) => void,
): Promise<void> {
  let position = range.start;
  const pending: Promise<void>[] = [];
  let failure: unknown;
  while (position <= range.end) {
    if (pending.length >= IN_FLIGHT) await pending.shift();
    if (failure !== undefined) throw failure;
    if (out.destroyed) throw new Error('the client went away');
    const buffer = take();
    const length = Math.min(buffer.length, range.end + 1 - position);
    const { bytesRead } = await file.read(buffer, 0, length, position);
    if (bytesRead === 0) {
      give(buffer);
      throw new Error(`the file ended at byte ${position} of ${range.end + 1}`);
    }
    position += bytesRead;
    onChunk?.(bytesRead);
    pending.push(
      new Promise<void>((resolve) => {
        out.write(buffer.subarray(0, bytesRead), (err) => {
          if (err) failure ??= err;
          else give(buffer);
          resolve();
        });
      }),
    );
  }
  await Promise.all(pending);
  if (failure !== undefined) throw failure;
  await new Promise<void>((resolve, reject) => {
    out.end((err?: Error | null) => (err ? reject(err) : resolve()));
  });
}
