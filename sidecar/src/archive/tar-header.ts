import { Header, Pax } from 'tar';

/** A file or directory as the archive writer saw it (`lstat`). */
export interface TarEntryInfo {
  /** Relative to the mirror root, `/`-separated; directories without the trailing slash. */
  path: string;
  type: 'File' | 'Directory';
  mode: number;
  size: number;
  mtime: Date;
}

const EMPTY = Buffer.alloc(0);

/**
 * The header blocks of one entry, written as node-tar's `create({ portable: true })` writes
 * them: a ustar block, preceded by a pax header when a field does not fit (a long path, a
 * size over 8 GiB); no owner, group or times but the file's mtime; directories with a
 * trailing `/` and no mtime; modes as tar's portable umask leaves them.
 */
export function tarHeader(entry: TarEntryInfo): Buffer {
  const isDir = entry.type === 'Directory';
  const fields = {
    path: isDir ? `${entry.path}/` : entry.path,
    mode: portableMode(entry.mode, isDir),
    size: isDir ? 0 : entry.size,
    mtime: isDir ? undefined : entry.mtime,
    type: entry.type,
  };
  const header = new Header(fields);
  const needPax = header.encode();
  if (!header.block) throw new Error(`cannot encode a tar header for ${entry.path}`);
  const pax = needPax
    ? new Pax({ path: fields.path, size: fields.size, mtime: fields.mtime }).encode()
    : EMPTY;
  return Buffer.concat([pax, header.block]);
}

/** node-tar's portable mode: owner rw, no group or other write; readable directories listable. */
export function portableMode(mode: number, isDir: boolean): number {
  let fixed = ((mode & 0o7777) | 0o600) & ~0o22;
  if (isDir) {
    if (fixed & 0o400) fixed |= 0o100;
    if (fixed & 0o40) fixed |= 0o10;
    if (fixed & 0o4) fixed |= 0o1;
  }
  return fixed;
}
