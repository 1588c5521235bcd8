import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseRepoId, type RepoId } from '../../../core/repo-id.ts';

/**
 * Where things live under GITMIRROR_DATA_DIR. Temp dirs sit on the same filesystem as the
 * mirrors so that installing a clone or a restore is a single atomic rename.
 *
 *   mirrors/{host}/{path}.git   bare mirrors
 *   tmp/                        clone-*, restore-*, retired-* (swept at start)
 *   spool/                      shared upstream responses for cold mirrors (swept at start)
 *   lfs/objects/{oid[0:2]}/{oid}  Git LFS objects; lfs/tmp/ their downloads (swept at start)
 *   pack-cache/                 packs of the pack cache (swept when it opens; absent when it is off)
 */
export class DataLayout {
  readonly root: string;
  readonly mirrorsDir: string;
  readonly tmpDir: string;
  readonly spoolDir: string;
  readonly lfsDir: string;
  readonly packCacheDir: string;

  constructor(root: string) {
    this.root = root;
    this.mirrorsDir = join(root, 'mirrors');
    this.tmpDir = join(root, 'tmp');
    this.spoolDir = join(root, 'spool');
    this.lfsDir = join(root, 'lfs');
    this.packCacheDir = join(root, 'pack-cache');
  }

  mirrorDir(repo: RepoId): string {
    return join(this.mirrorsDir, repo.host, `${repo.path}.git`);
  }

  async prepare(): Promise<void> {
    await Promise.all(
      [this.mirrorsDir, this.tmpDir, this.spoolDir].map((d) => mkdir(d, { recursive: true })),
    );
  }

  makeTempDir(kind: 'clone' | 'restore'): Promise<string> {
    return mkdtemp(join(this.tmpDir, `${kind}-`));
  }

  /**
   * Sweeps what a crash or kill left behind. A `retired-*` dir whose mirror is missing is
   * the old mirror of an interrupted replacement: it is put back, so the crash leaves the
   * old mirror rather than none.
   */
  async sweep(): Promise<{ removed: number; recovered: number }> {
    let removed = 0;
    let recovered = 0;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const path = join(this.tmpDir, name);
      const target = name.startsWith('retired-') ? retiredTarget(this, name) : undefined;
      if (target && !(await exists(target))) {
        await mkdir(join(target, '..'), { recursive: true });
        await rename(path, target);
        recovered++;
        continue;
      }
      await rm(path, { recursive: true, force: true });
      removed++;
    }
    await rm(this.spoolDir, { recursive: true, force: true });
    await mkdir(this.spoolDir, { recursive: true });
    return { removed, recovered };
  }

  /** Name under tmp/ for the previous mirror while a replacement is installed; unique, so two never collide. */
  retiredName(repo: RepoId): string {
    return join(this.tmpDir, `retired-${Buffer.from(repo.id).toString('base64url')}-${randomSuffix()}`);
  }

  /** Mirror dirs found on disk: every `*.git` dir under mirrors/ that has a HEAD file. */
  async discover(): Promise<string[]> {
    const found: string[] = [];
    const walk = async (dir: string, depth: number): Promise<void> => {
      if (depth > 10) return;
      for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (!entry.isDirectory()) continue;
        const path = join(dir, entry.name);
        if (entry.name.endsWith('.git') && (await exists(join(path, 'HEAD')))) found.push(path);
        else await walk(path, depth + 1);
      }
    };
    await walk(this.mirrorsDir, 0);
    return found.map((p) => p.slice(this.mirrorsDir.length + 1).replace(/\.git$/, ''));
  }
}

function retiredTarget(layout: DataLayout, name: string): string | undefined {
  const encoded = /^retired-([A-Za-z0-9_-]+)-[a-z0-9]+$/.exec(name)?.[1];
  if (!encoded) return undefined;
  try {
    return layout.mirrorDir(parseRepoId(Buffer.from(encoded, 'base64url').toString('utf8')));
  } catch {
    return undefined;
  }
}

function randomSuffix(): string {
  return randomBytes(6).toString('hex');
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
