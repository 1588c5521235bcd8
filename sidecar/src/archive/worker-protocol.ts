import { type ErrorCode, GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * Messages between the main thread and the archive workers. Data moves as transferred
 * ArrayBuffers (no copy through the structured-clone path), and the receiver acknowledges
 * the bytes it has taken, so the sender keeps a bounded amount in flight: that is the
 * backpressure across the thread boundary. Counting bytes rather than chunks matters
 * because chunk sizes vary from 512-byte tar headers to 16 MiB ranged reads.
 */

export interface ChunkMessage {
  type: 'chunk';
  data: ArrayBuffer;
}
export interface AckMessage {
  type: 'ack';
  bytes: number;
}
export interface EndMessage {
  type: 'end';
}
export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  message: string;
}

/**
 * Bytes a sender may have posted but not yet seen acknowledged. One chunk is always allowed
 * even when it is bigger, or a large chunk could never be sent.
 */
export const MAX_BYTES_IN_FLIGHT = 4 * 1024 * 1024;

/**
 * An ArrayBuffer holding exactly `chunk`'s bytes that is safe to transfer. A Buffer that
 * owns its whole backing store is handed over as is; a slice (pooled socket buffers, views
 * into a larger block) is copied, because transferring would detach bytes that other
 * Buffers still use.
 */
export function toTransferable(chunk: Uint8Array): ArrayBuffer {
  const backing = chunk.buffer;
  if (backing instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === backing.byteLength)
    return backing;
  const copy = new ArrayBuffer(chunk.byteLength);
  new Uint8Array(copy).set(chunk);
  return copy;
}

export function errorMessage(err: unknown, fallback: ErrorCode): ErrorMessage {
  if (err instanceof GitMirrorError) return { type: 'error', code: err.code, message: err.message };
  return { type: 'error', code: fallback, message: err instanceof Error ? err.message : String(err) };
}

export function errorFromMessage(message: ErrorMessage): GitMirrorError {
  return new GitMirrorError(message.code, message.message);
}
