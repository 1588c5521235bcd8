import { createHash } from 'node:crypto';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import type { ChunkMessage, EndMessage } from './worker-protocol.ts';

/**
 * Worker thread between the main thread and the extract worker: sha256 every chunk of the
 * compressed stream, then pass the chunk on, transferred, not copied. Hashing is a quarter of
 * a restore's CPU time; on its own thread it overlaps with decompression and writing instead
 * of adding to them.
 */

export interface DigestRelayJob {
  /** Where chunks go next; receives `{ type: 'end', sha256 }` after the last one. */
  next: MessagePort;
}

/** What the relay sends after the last chunk: the sha256 of every byte it passed on. */
export interface DigestEndMessage {
  type: 'end';
  sha256: string;
}

const { next } = workerData as DigestRelayJob;
const hash = createHash('sha256');

parentPort!.on('message', (message: ChunkMessage | EndMessage) => {
  if (message.type === 'chunk') {
    hash.update(new Uint8Array(message.data));
    next.postMessage(message, [message.data]);
  } else {
    next.postMessage({ type: 'end', sha256: hash.digest('hex') } satisfies DigestEndMessage);
    next.close();
  }
});
