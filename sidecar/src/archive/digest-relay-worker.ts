import { createHash } from 'node:crypto';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import type { ChunkMessage, EndMessage } from './worker-protocol.ts';

/**
 * Worker thread between two stages of an archive pipeline: sha256 every chunk of the
 * compressed stream and pass it on. Hashing is a quarter of an archive's CPU time; on its own
 * thread it overlaps with compressing or unpacking instead of adding to them.
 *
 * Chunks smaller than `minChunkBytes` are gathered into one before they go on: zstd emits
 * ~128 KiB pieces, and every message becomes a buffer the receiver must later collect, which
 * on the main thread means garbage-collection pauses during a snapshot. Chunks already that
 * big are transferred as they are, without a copy.
 */

export interface DigestRelayJob {
  /** Where chunks come from; the creating thread (`parentPort`) when absent. */
  input?: MessagePort;
  /** Where chunks go; receives `{ type: 'end', sha256 }` after the last one. */
  next: MessagePort;
  /** Gather smaller chunks up to this size before passing them on (0: pass each on). */
  minChunkBytes: number;
}

/** What the relay sends after the last chunk: the sha256 of every byte it passed on. */
export interface DigestEndMessage {
  type: 'end';
  sha256: string;
}

const { input, next, minChunkBytes } = workerData as DigestRelayJob;
const hash = createHash('sha256');
let gathered: Uint8Array[] = [];
let gatheredBytes = 0;

function send(data: ArrayBuffer): void {
  next.postMessage({ type: 'chunk', data } satisfies ChunkMessage, [data]);
}

function flush(): void {
  if (gatheredBytes === 0) return;
  const joined = new Uint8Array(gatheredBytes);
  let offset = 0;
  for (const part of gathered) {
    joined.set(part, offset);
    offset += part.byteLength;
  }
  gathered = [];
  gatheredBytes = 0;
  send(joined.buffer);
}

function relay(data: ArrayBuffer): void {
  const bytes = new Uint8Array(data);
  hash.update(bytes);
  if (gatheredBytes === 0 && bytes.byteLength >= minChunkBytes) {
    send(data);
    return;
  }
  gathered.push(bytes);
  gatheredBytes += bytes.byteLength;
  if (gatheredBytes >= minChunkBytes) flush();
}

(input ?? parentPort!).on('message', (message: ChunkMessage | EndMessage) => {
  if (message.type === 'chunk') {
    relay(message.data);
    return;
  }
  flush();
  next.postMessage({ type: 'end', sha256: hash.digest('hex') } satisfies DigestEndMessage);
  next.close();
});
