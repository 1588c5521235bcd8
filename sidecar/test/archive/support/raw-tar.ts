/**
 * A tar writer that controls every byte, for fuzzing the extractor: 512-byte headers whose
 * fields are written exactly as given (over-long names are cut, not moved to a PAX header),
 * size fields in octal, base-256 (positive or negative) or raw garbage, checksums right or
 * wrong, PAX records and GNU long-name headers. `tar-fixtures.ts` goes through node-tar's
 * own Header, which repairs what these tests need broken.
 */

export const BLOCK = 512;

/** A header field value: a number (octal), a string (UTF-8) or the field's raw bytes. */
export type FieldValue = number | string | Uint8Array;

export interface HeaderFields {
  name: string | Uint8Array;
  /** One byte: '0', '5', '2', ... or any other character. */
  typeflag: string;
  size?: FieldValue;
  mode?: FieldValue;
  uid?: FieldValue;
  gid?: FieldValue;
  mtime?: FieldValue;
  linkname?: string | Uint8Array;
  /** `ustar\0` + `00` (POSIX), `ustar  \0` (old GNU) or none at all (v7). */
  magic?: 'ustar' | 'gnu' | 'none';
  uname?: string;
  gname?: string;
  devmajor?: FieldValue;
  devminor?: FieldValue;
  /** The ustar prefix, joined to the name with a `/` by readers. */
  prefix?: string | Uint8Array;
  checksum?: 'valid' | 'wrong' | 'blank';
}

/** `width - 1` octal digits and a NUL, as tar writes numbers that fit. */
export function octal(value: number, width: number): Buffer {
  return Buffer.from(
    `${Math.trunc(value)
      .toString(8)
      .padStart(width - 1, '0')
      .slice(-(width - 1))}\0`,
  );
}

/**
 * GNU base-256: a first byte of 0x80 (positive) or 0xff (negative, two's complement),
 * the value big-endian in the rest of the field.
 */
export function base256(value: bigint, width: number): Buffer {
  const bits = BigInt(width * 8);
  let n = BigInt.asUintN(Number(bits), value);
  const out = Buffer.alloc(width);
  for (let i = width - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  out[0] = value < 0n ? 0xff : 0x80;
  return out;
}

const OFFSETS = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  checksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 8],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

export type FieldName = keyof typeof OFFSETS;
export const FIELD_NAMES = Object.keys(OFFSETS) as FieldName[];

function encodeField(value: FieldValue, width: number): Buffer {
  if (typeof value === 'number') return octal(value, width);
  return Buffer.from(typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
}

/** Writes `value` into the field of the header at `block[offset..]`, cut to the field's width. */
export function setField(block: Buffer, offset: number, field: FieldName, value: FieldValue): void {
  const [at, width] = OFFSETS[field];
  block.fill(0, offset + at, offset + at + width);
  encodeField(value, width).copy(block, offset + at, 0, width);
}

/** Recomputes the checksum of the header at `block[offset..]` (6 octal digits, NUL, space). */
export function fixChecksum(block: Buffer, offset = 0, delta = 0): void {
  block.fill(0x20, offset + 148, offset + 156);
  let sum = 0;
  for (let i = offset; i < offset + BLOCK; i++) sum += block[i]!;
  Buffer.from(`${(sum + delta).toString(8).padStart(6, '0').slice(-6)}\0 `).copy(block, offset + 148);
}

export function header(fields: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  setField(block, 0, 'name', fields.name);
  setField(block, 0, 'mode', fields.mode ?? 0o644);
  setField(block, 0, 'uid', fields.uid ?? 0);
  setField(block, 0, 'gid', fields.gid ?? 0);
  setField(block, 0, 'size', fields.size ?? 0);
  setField(block, 0, 'mtime', fields.mtime ?? 1_700_000_000);
  setField(block, 0, 'typeflag', fields.typeflag.slice(0, 1) || '\0');
  if (fields.linkname !== undefined) setField(block, 0, 'linkname', fields.linkname);
  const magic = fields.magic ?? 'ustar';
  if (magic === 'ustar') setField(block, 0, 'magic', 'ustar\u000000');
  if (magic === 'gnu') setField(block, 0, 'magic', 'ustar  \0');
  if (magic !== 'none') {
    setField(block, 0, 'uname', fields.uname ?? 'root');
    setField(block, 0, 'gname', fields.gname ?? 'root');
    setField(block, 0, 'devmajor', fields.devmajor ?? 0);
    setField(block, 0, 'devminor', fields.devminor ?? 0);
    if (fields.prefix !== undefined) setField(block, 0, 'prefix', fields.prefix);
  }
  const checksum = fields.checksum ?? 'valid';
  if (checksum === 'blank') block.fill(0x20, 148, 156);
  else fixChecksum(block, 0, checksum === 'wrong' ? 1 : 0);
  return block;
}

export function pad(body: Uint8Array): Buffer {
  const padded = Buffer.alloc(Math.ceil(body.length / BLOCK) * BLOCK);
  padded.set(body);
  return padded;
}

/** A header and its body padded to whole blocks; `size` defaults to the body's length. */
export function entry(fields: HeaderFields, body: Uint8Array = Buffer.alloc(0)): Buffer {
  return Buffer.concat([header({ size: body.length, ...fields }), pad(body)]);
}

/** One PAX record: `"<len> <key>=<value>\n"`, where len counts the whole record, itself included. */
export function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restBytes = Buffer.byteLength(rest);
  let len = restBytes + 1;
  while (String(len).length + restBytes !== len) len = String(len).length + restBytes;
  return `${len}${rest}`;
}

/** A PAX extended header (`x`, or `g` for global) carrying `records`, to precede an entry. */
export function paxHeader(records: Array<[string, string]>, global = false): Buffer {
  const body = Buffer.from(records.map(([k, v]) => paxRecord(k, v)).join(''));
  return entry(
    { name: global ? 'pax_global_header' : 'PaxHeader/entry', typeflag: global ? 'g' : 'x' },
    body,
  );
}

/** A GNU `././@LongLink` header: `L` sets the next entry's path, `K` its link target. */
export function gnuLong(kind: 'L' | 'K', value: string | Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(value), Buffer.alloc(1)]);
  return entry({ name: '././@LongLink', typeflag: kind, magic: 'gnu' }, body);
}

/** The end-of-archive marker: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** Offsets of every header block in a well-formed tar (stops at the first zero block). */
export function headerOffsets(tar: Buffer): number[] {
  const offsets: number[] = [];
  let offset = 0;
  while (offset + BLOCK <= tar.length) {
    const block = tar.subarray(offset, offset + BLOCK);
    if (block.every((b) => b === 0)) break;
    offsets.push(offset);
    const size = Number.parseInt(block.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
    offset += BLOCK + Math.ceil((Number.isFinite(size) ? size : 0) / BLOCK) * BLOCK;
  }
  return offsets;
}
