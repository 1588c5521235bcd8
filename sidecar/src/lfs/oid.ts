import { createHash } from 'node:crypto';

/**
 * Git LFS objects are named by the sha256 of their content (`oid`) and carry their size; a
 * pointer file in the repository stands in for the content. Everything here is pure: names,
 * pointer text, and the git blob a canonical pointer is stored as.
 */
export interface LfsObjectId {
  /** 64 lower-case hex digits: sha256 of the content. */
  oid: string;
  size: number;
}

const OID = /^[0-9a-f]{64}$/;

/** Pointer files are at most this long (the spec's limit; git-lfs ignores longer blobs). */
export const MAX_POINTER_BYTES = 1024;

const POINTER_VERSIONS = new Set([
  'https://git-lfs.github.com/spec/v1',
  // Pre-1.0 pointers still found in old histories; git-lfs reads them too.
  'https://hawser.github.com/spec/v1',
]);

export function isOid(value: unknown): value is string {
  return typeof value === 'string' && OID.test(value);
}

export function isObjectSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Parses a pointer file; undefined for anything that is not one (most blobs). Keys after
 * `version` are `oid`, `size` and optional `ext-*` lines, each line ending in a newline.
 */
export function parsePointer(content: Buffer | string): LfsObjectId | undefined {
  const text = typeof content === 'string' ? content : content.toString('utf8');
  if (text.length > MAX_POINTER_BYTES || !text.startsWith('version ') || !text.endsWith('\n'))
    return undefined;
  const lines = text.slice(0, -1).split('\n');
  if (!POINTER_VERSIONS.has(lines[0]!.slice('version '.length))) return undefined;
  let oid: string | undefined;
  let size: number | undefined;
  for (const line of lines.slice(1)) {
    const space = line.indexOf(' ');
    if (space <= 0) return undefined;
    const key = line.slice(0, space);
    const value = line.slice(space + 1);
    if (key === 'oid') {
      if (!value.startsWith('sha256:') || !isOid(value.slice(7))) return undefined;
      oid = value.slice(7);
    } else if (key === 'size') {
      if (!/^(0|[1-9]\d{0,15})$/.test(value)) return undefined;
      size = Number(value);
    } else if (!/^ext-\d-[a-z0-9-]+$/.test(key)) {
      return undefined;
    }
  }
  return oid !== undefined && isObjectSize(size) ? { oid, size } : undefined;
}

/** The pointer text git-lfs writes for an object: the one form its blob id is known for. */
export function canonicalPointer(object: LfsObjectId): string {
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${object.oid}\nsize ${object.size}\n`;
}

/**
 * The git object id of the canonical pointer blob, in a repository of the given object
 * format. A mirror that holds this blob has (had) a pointer to the object in its history.
 */
export function pointerBlobId(object: LfsObjectId, format: 'sha1' | 'sha256'): string {
  const body = canonicalPointer(object);
  return createHash(format)
    .update(`blob ${Buffer.byteLength(body)}\0`)
    .update(body)
    .digest('hex');
}
