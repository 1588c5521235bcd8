import { chown, mkdir, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Writes a secret/configMap/projected volume the way the kubelet's AtomicWriter does: the
 * files go into a fresh hidden `..<timestamp>` directory, `..data` is switched to it with one
 * rename, and each top-level name is a symlink through `..data`. A reader therefore sees the
 * old set or the new set, never a mix, and a program that watches its file sees the swap.
 */

export interface VolumeFile {
  path: string;
  content: Buffer;
  mode: number;
}

export interface Ownership {
  uid: number;
  gid: number;
}

export async function writeAtomically(dir: string, files: VolumeFile[], owner: Ownership): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chown(dir, 0, owner.gid);
  const stamp = `..${new Date().toISOString().replace(/[:.]/g, '_')}.${process.hrtime.bigint()}`;
  const payload = join(dir, stamp);
  await mkdir(payload, { mode: 0o755 });
  await chown(payload, 0, owner.gid);
  for (const file of files) {
    const target = join(payload, file.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    await writeFile(target, file.content, { mode: file.mode });
    await chown(target, owner.uid, owner.gid);
  }
  const previous = await readlink(join(dir, '..data')).catch(() => undefined);
  const tempLink = join(dir, '..data_tmp');
  await rm(tempLink, { force: true });
  await symlink(stamp, tempLink);
  await rename(tempLink, join(dir, '..data'));
  const topLevel = new Set(files.map((f) => f.path.split('/')[0]!));
  for (const name of topLevel) {
    await symlink(join('..data', name), join(dir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  // Names the new payload no longer has, and the old payload itself.
  for (const entry of await readdir(dir)) {
    if (!entry.startsWith('..') && !topLevel.has(entry)) await rm(join(dir, entry), { force: true });
  }
  if (previous && previous !== stamp) await rm(join(dir, previous), { recursive: true, force: true });
}
