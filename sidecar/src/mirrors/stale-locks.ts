import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A fetch killed with -9 leaves `*.lock` files (packed-refs.lock, refs/heads/x.lock) and
 * `tmp_pack_*` files behind, and git refuses to update those refs until they are gone.
 * Only called at start, before any git process of ours runs in the mirror.
 */
export async function sweepStaleLocks(mirrorDir: string): Promise<number> {
  let removed = 0;
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 12) return;
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(path, depth + 1);
      } else if (
        entry.name.endsWith('.lock') ||
        entry.name.startsWith('tmp_pack_') ||
        entry.name.startsWith('tmp_idx_')
      ) {
        await rm(path, { force: true });
        removed++;
      }
    }
  };
  await walk(mirrorDir, 0);
  return removed;
}
