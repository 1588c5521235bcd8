import { rawFrameBytes, rawPayloadBytes } from './zstd-frames.ts';

/**
 * Archive layout 2: a `tar.zst` cut into pieces that can be written and read in parallel.
 *
 *   [stored files]  per file: a raw frame with its tar header, then its content in raw
 *                   frames of at most PIECE_BYTES (the last one carries tar's padding too)
 *   [entries]       every other tar entry (directories, small files), zstd-compressed in
 *                   frames; a piece ends on an entry boundary once it holds PIECE_BYTES of
 *                   tar; the last one ends with tar's end-of-archive marker
 *   [index]         a skippable frame: the pieces, in order, each with its size and sha256
 *
 * Decompressed in order, the frames are one plain tar, so `zstd -dc X | tar -x` restores it.
 * The manifest holds the size and sha256 of the index frame, the index a sha256 of every
 * piece before it, so every byte is verified, and pieces can be verified independently.
 * Stored files are the ones git already compressed or that are mostly object ids: zstd
 * would spend most of a snapshot's CPU on them to save nothing.
 */

export const PIECE_BYTES = 8 * 1024 * 1024;
/** Below this a file goes with the entries: a piece of its own would cost more than it saves. */
export const MIN_STORED_BYTES = 1024 * 1024;
/** An index of 64 MiB lists ~400k pieces, an archive of ~3 TiB. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;
const MAX_PIECES = 1_000_000;
const TAR_BLOCK = 512;
const SHA256 = /^[0-9a-f]{64}$/;

/** Packs are zlib data; indexes, reverse indexes and multi-pack indexes are mostly object ids. */
const STORED_NAMES = [/\.pack$/, /\.idx$/, /\.rev$/, /^multi-pack-index$/];

export function isStoredFile(path: string, size: number): boolean {
  if (size < MIN_STORED_BYTES) return false;
  const name = path.slice(path.lastIndexOf('/') + 1);
  return STORED_NAMES.some((pattern) => pattern.test(name));
}

export function paddedSize(size: number): number {
  return Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
}

interface PieceBase {
  /** Bytes of the archive the piece spans. */
  bytes: number;
  /** sha256 of those bytes. */
  sha256: string;
}
/** zstd frames holding whole tar entries. */
export interface EntriesPiece extends PieceBase {
  kind: 'entries';
}
/** A raw frame holding the tar header of a stored file whose content pieces follow. */
export interface FilePiece extends PieceBase {
  kind: 'file';
  path: string;
  size: number;
  mode: number;
}
/** A raw frame holding `length` bytes of the preceding file's content (and padding). */
export interface ContentPiece extends PieceBase {
  kind: 'content';
  length: number;
}
export type Piece = EntriesPiece | FilePiece | ContentPiece;

export interface ArchiveIndex {
  layout: 2;
  pieces: Piece[];
}

/** A piece with where it sits: in the archive, and for content, in its file. */
export type PlacedPiece =
  | (EntriesPiece & { offset: number; last: boolean })
  | (FilePiece & { offset: number })
  | (ContentPiece & { offset: number; path: string; at: number; fileSize: number });

/** The content pieces of a stored file of `size` bytes: lengths, each within PIECE_BYTES. */
export function contentLengths(size: number): number[] {
  const total = paddedSize(size);
  const lengths: number[] = [];
  for (let at = 0; at < total; at += PIECE_BYTES) lengths.push(Math.min(PIECE_BYTES, total - at));
  return lengths;
}

/** Archive bytes of a stored file: its header frame and its content frames. */
export function storedFileBytes(headerBytes: number, size: number): number {
  return contentLengths(size).reduce(
    (sum, length) => sum + rawFrameBytes(length),
    rawFrameBytes(headerBytes),
  );
}

export function encodeIndex(pieces: Piece[]): Buffer {
  return Buffer.from(JSON.stringify({ layout: 2, pieces } satisfies ArchiveIndex), 'utf8');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function count(value: unknown, min: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min;
}

interface OpenFile {
  path: string;
  size: number;
  left: number;
  at: number;
}

/** One piece of the index, checked against what precedes it; returns the stored file still open. */
function placeOne(
  piece: unknown,
  where: string,
  context: { offset: number; last: boolean; file: OpenFile | undefined },
  placed: PlacedPiece[],
): OpenFile | undefined {
  if (
    !isObject(piece) ||
    !count(piece.bytes, 1) ||
    typeof piece.sha256 !== 'string' ||
    !SHA256.test(piece.sha256)
  )
    throw new Error(`${where} has no valid size and sha256`);
  const { file } = context;
  const base = { bytes: piece.bytes, sha256: piece.sha256, offset: context.offset };
  if (file && piece.kind !== 'content') throw new Error(`${where} interrupts the content of ${file.path}`);
  if (piece.kind === 'entries') {
    placed.push({ kind: 'entries', ...base, last: context.last });
    return undefined;
  }
  if (piece.kind === 'file') {
    const { path, size, mode } = piece;
    if (typeof path !== 'string' || !count(size, 0) || !count(mode, 0) || mode > 0o7777)
      throw new Error(`${where} is not a valid stored file`);
    if (rawPayloadBytes(piece.bytes) < TAR_BLOCK)
      throw new Error(`${where} is not a raw frame of a tar header`);
    placed.push({ kind: 'file', ...base, path, size, mode });
    return size > 0 ? { path, size, left: paddedSize(size), at: 0 } : undefined;
  }
  if (piece.kind === 'content') {
    const { length } = piece;
    if (!file || !count(length, 1) || length > file.left || piece.bytes !== rawFrameBytes(length))
      throw new Error(`${where} is not valid content of a stored file`);
    placed.push({ kind: 'content', ...base, length, path: file.path, at: file.at, fileSize: file.size });
    file.at += length;
    file.left -= length;
    return file.left === 0 ? undefined : file;
  }
  throw new Error(`${where} has unknown kind ${JSON.stringify(piece.kind)?.slice(0, 40)}`);
}

/**
 * The index of an archive of `archiveBytes` bytes whose last `indexBytes` are the index
 * frame, checked as untrusted input: pieces are contiguous from 0 to the index, each stored
 * file's content pieces follow its header and add up to its padded size, each raw frame has
 * exactly the size its payload gives, and the last piece holds entries (the end marker).
 * Paths are judged later, by the entry policy, like any tar entry's. Throws an Error that
 * says what is wrong.
 */
export function placePieces(value: unknown, archiveBytes: number, indexBytes: number): PlacedPiece[] {
  if (!isObject(value) || value.layout !== 2 || !Array.isArray(value.pieces))
    throw new Error('index is not a layout 2 index');
  const raw = value.pieces as unknown[];
  if (raw.length === 0 || raw.length > MAX_PIECES) throw new Error(`index lists ${raw.length} pieces`);
  const placed: PlacedPiece[] = [];
  let offset = 0;
  let file: OpenFile | undefined;
  for (const [i, piece] of raw.entries()) {
    file = placeOne(piece, `piece ${i}`, { offset, last: i === raw.length - 1, file }, placed);
    offset += placed[i]!.bytes;
  }
  if (file) throw new Error(`the content of ${file.path} is incomplete`);
  if (placed.at(-1)!.kind !== 'entries') throw new Error('the last piece does not hold entries');
  if (offset !== archiveBytes - indexBytes)
    throw new Error(
      `pieces span ${offset} bytes, the archive has ${archiveBytes - indexBytes} before its index`,
    );
  return placed;
}
