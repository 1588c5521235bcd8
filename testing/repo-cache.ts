import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { git } from './git.ts';

/**
 * Generated repositories that take minutes to make (the benchmark's, the soak's), made once
 * per parameter set and kept outside the repository. An entry is built in a temp dir beside
 * its final place and renamed there with a `complete.json` marker inside, so an interrupted
 * generation is never reused.
 */

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** `$envVar`, else `~/.cache/<name>`; refused inside the repository (it would be committed). */
export function cacheDirOutsideRepo(envVar: string, name: string): string {
  const dir = resolve(process.env[envVar] || join(homedir(), '.cache', name));
  const inside = relative(REPO_ROOT, dir);
  if (!inside.startsWith('..') && !inside.startsWith('/'))
    throw new Error(`the cache ${dir} (${envVar}) must be outside the repository`);
  return dir;
}

/** A short stable digest of parameters (key order does not matter). */
export function paramsDigest(params: object): string {
  const canonical = JSON.stringify(
    Object.fromEntries(Object.entries(params).sort(([a], [b]) => a.localeCompare(b))),
  );
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

export interface CachedEntry<T> {
  /** The entry's directory. */
  dir: string;
  /** What `build` returned when the entry was made. */
  info: T;
  /** Whether this call built it (false: found in the cache). */
  generated: boolean;
  generateSeconds?: number;
}

/** The entry `<cacheDir>/<key>`, built by `build(tempDir)` if it is not there yet. */
export async function ensureCached<T>(options: {
  cacheDir: string;
  key: string;
  build: (dir: string) => Promise<T>;
}): Promise<CachedEntry<T>> {
  const final = join(options.cacheDir, options.key);
  const marker = join(final, 'complete.json');
  const found = await readFile(marker, 'utf8').then(
    (text) => JSON.parse(text) as T,
    () => undefined,
  );
  if (found) return { dir: final, info: found, generated: false };
  await mkdir(options.cacheDir, { recursive: true });
  const temp = await mkdtemp(join(options.cacheDir, '.build-'));
  try {
    const started = performance.now();
    const info = await options.build(temp);
    const generateSeconds = (performance.now() - started) / 1000;
    await writeFile(join(temp, 'complete.json'), `${JSON.stringify(info, null, 2)}\n`);
    await rename(temp, final).catch(async (err: NodeJS.ErrnoException) => {
      // A concurrent run finished the same parameters first; theirs is identical.
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
    return { dir: final, info, generated: true, generateSeconds };
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/**
 * Upstream as a hosting service keeps it: one pack with a reachability bitmap and a
 * commit-graph, so a clone from it is as fast as a server can make it.
 */
export async function prepareUpstream(bare: string): Promise<void> {
  // A repack of a large repository takes minutes on a small machine.
  const slow = { cwd: bare, timeoutMs: 60 * 60_000 };
  await git(['-c', 'pack.threads=0', 'repack', '-a', '-d', '-b', '--quiet'], slow);
  await git(['commit-graph', 'write', '--reachable'], slow);
}

export interface RepoStats {
  objects: number;
  packBytes: number;
  refs: number;
  commits: number;
}

export async function repoStats(bare: string): Promise<RepoStats> {
  const counted = await git(['count-objects', '-v'], { cwd: bare });
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(counted)?.[1] ?? 0);
  const refs = (await git(['for-each-ref', '--format=%(refname)'], { cwd: bare })).trim().split('\n').length;
  const commits = Number((await git(['rev-list', '--all', '--count'], { cwd: bare })).trim());
  return {
    objects: field('count') + field('in-pack'),
    packBytes: field('size-pack') * 1024,
    refs,
    commits,
  };
}
