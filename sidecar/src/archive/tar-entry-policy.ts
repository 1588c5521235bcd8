import { GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * What a snapshot archive may contain. Archives come from shared storage, so each entry is
 * judged on its own before anything touches the disk, and one bad entry fails the whole
 * restore: a mirror with entries silently dropped would be a corrupt mirror.
 *
 * Allowed: regular files and directories, at relative paths of plain segments. Refused:
 * absolute paths, `..` in any position, links of either kind, devices, FIFOs, and anything
 * else tar can express.
 */

export type EntryKind = 'file' | 'directory';

export interface ExtractLimits {
  /** Entries in one archive; a git mirror after repack has a few hundred. */
  maxEntries: number;
  /** Bytes of a single file. */
  maxEntryBytes: number;
  /** Uncompressed bytes of all files together. */
  maxTotalBytes: number;
}

const GIB = 1024 * 1024 * 1024;

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxEntries: 5_000_000,
  maxEntryBytes: 100 * GIB,
  maxTotalBytes: 1024 * GIB,
};

/**
 * Linux's PATH_MAX and NAME_MAX, in bytes. No file of a real mirror can exceed them, and an
 * entry that does would fail in the kernel (ENAMETOOLONG) instead of being refused here.
 */
const MAX_PATH_BYTES = 4096;
const MAX_SEGMENT_BYTES = 255;
const MAX_DEPTH = 64;
const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

function shown(path: string): string {
  return JSON.stringify(path.slice(0, 200));
}

export function unsafe(path: string, why: string): GitMirrorError {
  return new GitMirrorError('SNAPSHOT_UNSAFE_ENTRY', `archive entry ${shown(path)} rejected: ${why}`);
}

/** Maps a tar entry type to what we create, or throws for every type we refuse. */
export function classifyEntry(path: string, type: string): EntryKind {
  if (FILE_TYPES.has(type)) return 'file';
  if (type === 'Directory') return 'directory';
  const what: Record<string, string> = {
    Link: 'hard links are not allowed',
    SymbolicLink: 'symbolic links are not allowed',
    CharacterDevice: 'devices are not allowed',
    BlockDevice: 'devices are not allowed',
    FIFO: 'FIFOs are not allowed',
  };
  throw unsafe(path, what[type] ?? `entry type ${type} is not allowed`);
}

/**
 * The entry's path as segments under the target (none for the root itself). `./` prefixes
 * and a trailing `/` (how tar writes directories) are fine; empty, `.` or `..` segments
 * anywhere else, absolute paths, backslashes, control characters, and names or paths longer
 * than the file system allows are not.
 */
export function safeSegments(path: string): string[] {
  if (path.length === 0 || Buffer.byteLength(path) > MAX_PATH_BYTES)
    throw unsafe(path, 'path is empty or too long');
  if (path.startsWith('/')) throw unsafe(path, 'absolute paths are not allowed');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f\\]/.test(path))
    throw unsafe(path, 'control characters and backslashes are not allowed');
  const relative = path.replace(/^(?:\.\/)+/, '').replace(/\/$/, '');
  // `./` itself: the archive root, which `tar -C dir -cf - .` writes first.
  if (relative === '' || relative === '.') return [];
  const segments = relative.split('/');
  for (const segment of segments) {
    if (segment === '..') throw unsafe(path, '".." segments are not allowed');
    if (segment === '' || segment === '.') throw unsafe(path, 'empty or "." segments are not allowed');
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)
      throw unsafe(path, `a name is longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
  if (segments.length > MAX_DEPTH) throw unsafe(path, `deeper than ${MAX_DEPTH} levels`);
  return segments;
}

/**
 * Permission bits only (no setuid, setgid or sticky), and always owner-writable: git writes
 * into its objects directories and the sidecar must be able to replace or delete anything
 * it restored. Directories are always owner-traversable for the same reason.
 */
export function sanitizedMode(kind: EntryKind, mode: number | undefined): number {
  const base = (mode ?? (kind === 'directory' ? 0o755 : 0o644)) & 0o777;
  return kind === 'directory' ? base | 0o700 : base | 0o600;
}
