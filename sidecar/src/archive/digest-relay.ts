import { type MessagePort, Worker } from 'node:worker_threads';
import type { DigestRelayJob } from './digest-relay-worker.ts';
import { RELAY_CHUNK_BYTES } from './worker-protocol.ts';

const RELAY_WORKER_URL = new URL('./digest-relay-worker.ts', import.meta.url);

/**
 * Starts the digest relay between two stages of an archive pipeline: it reads chunks from
 * `input` (the creating thread when absent), hashes them, and passes them to `next` gathered
 * to RELAY_CHUNK_BYTES, then `{ type: 'end', sha256 }`. Both ports are transferred.
 */
export function startDigestRelay(ports: { next: MessagePort; input?: MessagePort }): Worker {
  const job: DigestRelayJob = { ...ports, minChunkBytes: RELAY_CHUNK_BYTES };
  return new Worker(RELAY_WORKER_URL, {
    workerData: job,
    transferList: ports.input ? [ports.input, ports.next] : [ports.next],
  });
}
