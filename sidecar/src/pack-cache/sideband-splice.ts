import { type FileHandle, open } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import { type FileSender, rawResponse } from './file-sender.ts';
import type { PackLease } from './pack-entry.ts';

/** side-band-64k (and protocol v2's packfile section): 65520-byte packets, 1 band byte. */
const PACKET_MAX = 65520;
const DATA_MAX = PACKET_MAX - 5;
const PACKETS_PER_WRITE = 16;
const KEEPALIVE = Buffer.from('0005\x01');
export const FLUSH = Buffer.from('0000');

function packet(band: 1 | 2 | 3, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(data.length + 5);
  out.write((data.length + 5).toString(16).padStart(4, '0'), 0, 'latin1');
  out[4] = band;
  data.copy(out, 5);
  return out;
}

/** A message on band 2 (progress, shown as `remote: ...`) or 3 (fatal error). */
function sidebandMessage(band: 2 | 3, text: string): Buffer {
  const bytes = Buffer.from(text);
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += DATA_MAX)
    parts.push(packet(band, bytes.subarray(at, at + DATA_MAX)));
  return Buffer.concat(parts);
}

export interface SpliceOptions {
  /** Whether the client asked for progress (pack-objects' `--progress`). */
  progress: boolean;
  /** Silence after which an empty band-1 packet tells the client we are still here (upload-pack's uploadpack.keepAlive). */
  keepaliveMs: number;
  /** Told the size of each piece written to the response (packets, progress, keepalives). */
  written?(bytes: number): void;
  /** Sends a completed pack without copying it through the sidecar, where the response allows. */
  sender?: { files: FileSender; timeoutMs: number };
}

/**
 * Writes a cached pack into a response as upload-pack would have: band-1 packets of at most
 * 65515 bytes, pack-objects' progress on band 2 if asked for, and keepalives while a
 * generation in progress has nothing new. The file is read in 1 MiB steps straight into the
 * packets' data slots of two frames used in turn, one written while the next is read, so a
 * byte costs a read and a socket write and the heap sees no new buffers: `out` must be done
 * with a chunk when its write callback runs, as sockets and HTTP responses are. A completed
 * pack is handed to `sender` after its first packet where the response allows (see
 * file-sender.ts): no byte of it then passes through the sidecar. Resolves with the pack
 * bytes sent once the whole pack is out; if the generation fails it writes the reason on
 * band 3 (the client stops with "remote error") and rejects, so no one mistakes a part for
 * the whole.
 */
export async function writeSidebandPack(
  lease: PackLease,
  out: Writable,
  options: SpliceOptions,
): Promise<number> {
  const file = await open(lease.path, 'r');
  const send = (data: Buffer) => {
    options.written?.(data.length);
    return write(out, data);
  };
  const stopProgress = options.progress
    ? lease.onProgress((text) => void send(sidebandMessage(2, text)))
    : () => {};
  try {
    if (options.progress && lease.role !== 'miss')
      await send(
        sidebandMessage(
          2,
          lease.role === 'hit'
            ? 'gitmirror: pack served from the cache\n'
            : 'gitmirror: joined a pack generation already under way\n',
        ),
      );
    if (options.sender && lease.state === 'complete' && lease.bytes > DATA_MAX)
      return await sendByHelper({ file, lease, out, send, keepaliveMs: options.keepaliveMs }, options);
    return await copyFramed({ file, lease, out, send, keepaliveMs: options.keepaliveMs }, 0);
  } finally {
    stopProgress();
    await file.close();
  }
}

interface Copy {
  file: FileHandle;
  lease: PackLease;
  out: Writable;
  send: (data: Buffer) => Promise<void>;
  keepaliveMs: number;
}

/**
 * A completed pack: its first packet goes out through the response (whose write callback
 * tells that everything before it reached the socket), the rest by the file sender straight
 * from the page cache into the socket, when the response allows; else it is copied.
 */
async function sendByHelper(copy: Copy, options: SpliceOptions): Promise<number> {
  const { file, lease, out, send } = copy;
  const first = Buffer.allocUnsafe(PACKET_MAX);
  const bytesRead = await readFramed(file, first, 0, DATA_MAX);
  if (bytesRead === 0) throw new GitMirrorError('PROCESS_FAILED', 'the cached pack is shorter than its size');
  await send(first.subarray(0, framedLength(first, bytesRead)));
  const target = rawResponse(out);
  if (!target || !options.sender) return copyFramed(copy, bytesRead);
  const sent = await options.sender.files.send({
    path: lease.path,
    offset: bytesRead,
    length: lease.bytes - bytesRead,
    target,
    timeoutMs: options.sender.timeoutMs,
  });
  options.written?.(sent);
  return lease.bytes;
}

/** Copies the pack from `from` on, through the sidecar, following a generation as it grows. */
async function copyFramed({ file, lease, out, send, keepaliveMs }: Copy, from: number): Promise<number> {
  // Two frames in turn: one is being written to the socket while the next is read into.
  const frames = [0, 1].map(() => Buffer.allocUnsafeSlow(PACKET_MAX * PACKETS_PER_WRITE));
  const writing: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  let position = from;
  for (let turn = 0; ; ) {
    if (out.destroyed) throw new GitMirrorError('ABORTED', 'the client went away');
    const available = lease.bytes - position;
    if (available > 0) {
      const slot = turn++ % 2;
      await writing[slot];
      const frame = frames[slot]!;
      const bytesRead = await readFramed(
        file,
        frame,
        position,
        Math.min(available, DATA_MAX * PACKETS_PER_WRITE),
      );
      if (bytesRead === 0)
        throw new GitMirrorError('PROCESS_FAILED', 'the cached pack is shorter than its size');
      position += bytesRead;
      writing[slot] = send(frame.subarray(0, framedLength(frame, bytesRead)));
      continue;
    }
    if (lease.state === 'complete') {
      await Promise.all(writing);
      return position;
    }
    if (lease.state === 'failed') {
      await Promise.all(writing);
      await send(sidebandMessage(3, `gitmirror: pack generation failed: ${lease.error}\n`));
      throw new GitMirrorError('PROCESS_FAILED', `pack generation failed: ${lease.error}`);
    }
    await waitOrKeepalive(lease, send, keepaliveMs);
  }
}

/** Reads up to `length` pack bytes straight into the data slots of the frame's packets (one readv, no copy). */
async function readFramed(
  file: FileHandle,
  frame: Buffer,
  position: number,
  length: number,
): Promise<number> {
  const slots: Buffer[] = [];
  for (let at = 0; at < length; at += DATA_MAX) {
    const start = (at / DATA_MAX) * PACKET_MAX + 5;
    slots.push(frame.subarray(start, start + Math.min(DATA_MAX, length - at)));
  }
  const { bytesRead } = await file.readv(slots, position);
  return bytesRead;
}

/** Writes the band-1 packet headers for `bytes` of data read into the frame; returns the frame's length. */
function framedLength(frame: Buffer, bytes: number): number {
  let length = 0;
  for (let left = bytes; left > 0; left -= DATA_MAX) {
    const part = Math.min(DATA_MAX, left);
    frame.write((part + 5).toString(16).padStart(4, '0'), length, 'latin1');
    frame[length + 4] = 1;
    length += part + 5;
  }
  return length;
}

async function waitOrKeepalive(
  lease: PackLease,
  send: (data: Buffer) => Promise<void>,
  keepaliveMs: number,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const quiet = new Promise<'quiet'>((resolve) => {
    timer = setTimeout(() => resolve('quiet'), keepaliveMs);
  });
  const outcome = await Promise.race([lease.changed().then(() => 'changed' as const), quiet]);
  clearTimeout(timer);
  if (outcome === 'quiet') await send(KEEPALIVE);
}

/** Resolves once the chunk is handed to the kernel (or the stream has failed). */
function write(out: Writable, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (out.destroyed || out.writableEnded) return resolve();
    out.write(data, () => resolve());
  });
}

/**
 * Relays upload-pack's output but keeps back its last 4 bytes: when the sidecar splices a
 * cached pack in, it goes before upload-pack's final flush packet, which upload-pack wrote
 * right after the (empty) output of the hook. Resolves with the bytes kept back.
 */
export function relayHoldingFlush(source: Readable, out: Writable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let held = Buffer.alloc(0);
    const pass = (data: Buffer) => {
      if (data.length > 0 && !out.write(data)) {
        source.pause();
        out.once('drain', () => source.resume());
      }
    };
    source.on('data', (chunk: Buffer) => {
      if (chunk.length >= 4) {
        // No copy of the chunk: what was held goes first, then all but the chunk's last 4 bytes.
        pass(held);
        pass(chunk.subarray(0, chunk.length - 4));
        held = Buffer.from(chunk.subarray(chunk.length - 4));
        return;
      }
      const all = Buffer.concat([held, chunk]);
      pass(all.subarray(0, Math.max(0, all.length - 4)));
      held = all.subarray(Math.max(0, all.length - 4));
    });
    source.once('end', () => resolve(held));
    source.once('error', reject);
  });
}
