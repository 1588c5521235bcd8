/**
 * The two kinds of zstd frame that archive layout 2 writes by hand (RFC 8878): raw frames,
 * whose blocks hold bytes stored as they are, and a skippable frame for the index. Any zstd
 * decoder reads both (`zstd -dc` copies raw blocks out and skips the skippable frame), so an
 * archive made of them still restores with `zstd -dc X | tar -x`, while a reader that knows
 * where the raw bytes sit can write them without decompressing anything.
 */

const ZSTD_MAGIC = 0xfd2fb528;
/** One of the 16 skippable-frame magic numbers (0x184D2A50–5F); this one marks our index. */
const INDEX_MAGIC = 0x184d2a5e;
/** The largest block zstd allows (RFC 8878 §3.1.1.2.4). */
export const MAX_BLOCK_BYTES = 128 * 1024;
/**
 * Frame header descriptor: 4-byte content size (bits 7–6 = 2), single segment (bit 5), no
 * checksum (the archive's index has a sha256 of every piece), no dictionary.
 */
const RAW_DESCRIPTOR = 0xa0;
const RAW_HEADER_BYTES = 9;
const BLOCK_HEADER_BYTES = 3;
/** Content sizes fit the 4-byte field. */
export const MAX_RAW_FRAME_PAYLOAD = 0xffff_ffff;
const SKIPPABLE_HEADER_BYTES = 8;

/** Bytes of a raw frame carrying `payload` bytes: a header, then a 3-byte header per block. */
export function rawFrameBytes(payload: number): number {
  const blocks = Math.max(1, Math.ceil(payload / MAX_BLOCK_BYTES));
  return RAW_HEADER_BYTES + blocks * BLOCK_HEADER_BYTES + payload;
}

/** The payload of a raw frame of `frameBytes` bytes, or -1 if no raw frame has that size. */
export function rawPayloadBytes(frameBytes: number): number {
  const blocks = Math.max(
    1,
    Math.ceil((frameBytes - RAW_HEADER_BYTES) / (MAX_BLOCK_BYTES + BLOCK_HEADER_BYTES)),
  );
  const payload = frameBytes - RAW_HEADER_BYTES - blocks * BLOCK_HEADER_BYTES;
  return payload >= 0 && rawFrameBytes(payload) === frameBytes ? payload : -1;
}

/**
 * Lays out a raw frame for `payload` bytes in `frame` (at least `rawFrameBytes(payload)`
 * long): writes the frame and block headers and returns views of the gaps where the payload
 * goes, in order, so a caller can read a file straight into them (`readvSync`).
 */
export function layOutRawFrame(frame: Buffer, payload: number): Buffer[] {
  if (payload > MAX_RAW_FRAME_PAYLOAD) throw new RangeError('raw frame payload too large');
  frame.writeUInt32LE(ZSTD_MAGIC, 0);
  frame[4] = RAW_DESCRIPTOR;
  frame.writeUInt32LE(payload, 5);
  const gaps: Buffer[] = [];
  let at = RAW_HEADER_BYTES;
  let left = payload;
  do {
    const size = Math.min(left, MAX_BLOCK_BYTES);
    left -= size;
    // Block header, little-endian: last-block bit, type 0 (raw) in bits 1–2, size above.
    const header = (left === 0 ? 1 : 0) | (size << 3);
    frame[at] = header & 0xff;
    frame[at + 1] = (header >>> 8) & 0xff;
    frame[at + 2] = (header >>> 16) & 0xff;
    at += BLOCK_HEADER_BYTES;
    gaps.push(frame.subarray(at, at + size));
    at += size;
  } while (left > 0);
  return gaps;
}

/** `payload` as one raw frame. */
export function rawFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(rawFrameBytes(payload.length));
  let offset = 0;
  for (const gap of layOutRawFrame(frame, payload.length)) {
    gap.set(payload.subarray(offset, offset + gap.length));
    offset += gap.length;
  }
  return frame;
}

export function skippableFrame(data: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(SKIPPABLE_HEADER_BYTES + data.length);
  frame.writeUInt32LE(INDEX_MAGIC, 0);
  frame.writeUInt32LE(data.length, 4);
  frame.set(data, SKIPPABLE_HEADER_BYTES);
  return frame;
}

/** The data of our skippable frame, which must span `frame` exactly; undefined if it is not one. */
export function skippableFrameData(frame: Buffer): Buffer | undefined {
  if (frame.length < SKIPPABLE_HEADER_BYTES) return undefined;
  if (frame.readUInt32LE(0) !== INDEX_MAGIC) return undefined;
  if (frame.readUInt32LE(4) !== frame.length - SKIPPABLE_HEADER_BYTES) return undefined;
  return frame.subarray(SKIPPABLE_HEADER_BYTES);
}

/**
 * Reads one raw frame as it arrives in pieces of any size and hands its payload on, as
 * views of the input (no copy). Refuses anything but the exact shape `layOutRawFrame` writes:
 * another descriptor, a compressed block, a block too big, a payload other than `expected`,
 * or bytes after the last block. `end()` throws unless the frame was complete.
 */
export class RawFrameReader {
  private readonly expected: number;
  private readonly onPayload: (bytes: Buffer) => void;
  private readonly header = Buffer.alloc(RAW_HEADER_BYTES);
  private headerHave = 0;
  private blockHeader = Buffer.alloc(BLOCK_HEADER_BYTES);
  private blockHeaderHave = 0;
  private blockLeft = 0;
  private lastBlock = false;
  private payloadSeen = 0;
  private done = false;

  constructor(expected: number, onPayload: (bytes: Buffer) => void) {
    this.expected = expected;
    this.onPayload = onPayload;
  }

  write(input: Buffer): void {
    let at = 0;
    while (at < input.length) {
      if (this.done) throw new Error('bytes after the end of a raw frame');
      if (this.headerHave < RAW_HEADER_BYTES) {
        at += this.fill(this.header, this.headerHave, input, at, (n) => (this.headerHave += n));
        if (this.headerHave === RAW_HEADER_BYTES) this.checkFrameHeader();
      } else if (this.blockLeft > 0) {
        const n = Math.min(this.blockLeft, input.length - at);
        this.onPayload(input.subarray(at, at + n));
        at += n;
        this.blockLeft -= n;
        this.payloadSeen += n;
        if (this.blockLeft === 0 && this.lastBlock) this.done = true;
      } else {
        at += this.fill(
          this.blockHeader,
          this.blockHeaderHave,
          input,
          at,
          (n) => (this.blockHeaderHave += n),
        );
        if (this.blockHeaderHave === BLOCK_HEADER_BYTES) this.startBlock();
      }
    }
  }

  end(): void {
    if (!this.done) throw new Error('raw frame is truncated');
  }

  private fill(target: Buffer, have: number, input: Buffer, at: number, add: (n: number) => void): number {
    const n = Math.min(target.length - have, input.length - at);
    input.copy(target, have, at, at + n);
    add(n);
    return n;
  }

  private checkFrameHeader(): void {
    if (this.header.readUInt32LE(0) !== ZSTD_MAGIC || this.header[4] !== RAW_DESCRIPTOR)
      throw new Error('not a raw zstd frame of this archive layout');
    if (this.header.readUInt32LE(5) !== this.expected)
      throw new Error(`raw frame holds ${this.header.readUInt32LE(5)} bytes, not ${this.expected}`);
  }

  private startBlock(): void {
    this.blockHeaderHave = 0;
    const value = this.blockHeader[0]! | (this.blockHeader[1]! << 8) | (this.blockHeader[2]! << 16);
    const size = value >>> 3;
    this.lastBlock = (value & 1) === 1;
    const left = this.expected - this.payloadSeen;
    if (((value >>> 1) & 3) !== 0) throw new Error('compressed block in a raw frame');
    // The writer fills every block but the last; any other split is not ours.
    if (size !== Math.min(left, MAX_BLOCK_BYTES) || this.lastBlock !== (size === left))
      throw new Error('raw frame blocks do not add up to its content size');
    this.blockLeft = size;
    if (size === 0) this.done = true;
  }
}
