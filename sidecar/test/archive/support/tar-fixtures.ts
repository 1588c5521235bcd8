import { createHash } from 'node:crypto';
import { Header } from 'tar';
import { compress } from 'zstd-napi';

/**
 * Hand-built tar streams, for archives no honest archiver would write: traversal paths,
 * links, devices. Each entry is a raw ustar header plus its padded body.
 */

export interface RawEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
  body?: string;
  linkpath?: string;
  mode?: number;
}

function block(entry: RawEntry): Buffer {
  const body = Buffer.from(entry.body ?? '');
  const type = entry.type ?? 'File';
  const header = new Header({
    path: entry.path,
    type,
    size: type === 'File' ? body.length : 0,
    mode: entry.mode ?? (type === 'Directory' ? 0o755 : 0o644),
    linkpath: entry.linkpath,
    mtime: new Date(1_700_000_000_000),
    uid: 0,
    gid: 0,
  });
  header.encode();
  const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
  body.copy(padded);
  return Buffer.concat([header.block!, type === 'File' ? padded : Buffer.alloc(0)]);
}

export function rawTar(entries: RawEntry[]): Buffer {
  return Buffer.concat([...entries.map(block), Buffer.alloc(1024)]);
}

export function zstd(data: Buffer): Buffer {
  return compress(data);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
