import { lstat, opendir, statfs } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Bytes a directory tree takes on disk, counted the way `du` and the kubelet's emptyDir
 * accounting count them: allocated blocks of every file and directory (hard links once), not
 * file lengths. A bare mirror is mostly a few large packs, so a walk is cheap; it is still a
 * walk, and it runs at known points (after a clone, restore, fetch or repack), not per request.
 * A path that vanishes during the walk counts as zero.
 */
export async function treeBytes(path: string): Promise<number> {
  const seen = new Set<string>();
  const walk = async (p: string): Promise<number> => {
    const stats = await lstat(p, { bigint: true }).catch(() => undefined);
    if (!stats) return 0;
    if (stats.nlink > 1n) {
      const id = `${stats.dev}:${stats.ino}`;
      if (seen.has(id)) return 0;
      seen.add(id);
    }
    let bytes = Number(stats.blocks) * 512;
    if (!stats.isDirectory()) return bytes;
    const dir = await opendir(p).catch(() => undefined);
    if (!dir) return bytes;
    const children: string[] = [];
    for await (const entry of dir) children.push(entry.name);
    // A bounded fan-out: a mirror's loose refs can be thousands of entries.
    for (let i = 0; i < children.length; i += 64) {
      const sizes = await Promise.all(children.slice(i, i + 64).map((name) => walk(join(p, name))));
      for (const size of sizes) bytes += size;
    }
    return bytes;
  };
  return walk(path);
}

/** Free bytes an unprivileged writer may still use on the filesystem of `path`. */
export async function filesystemFreeBytes(path: string): Promise<number> {
  const fs = await statfs(path);
  return fs.bavail * fs.bsize;
}
