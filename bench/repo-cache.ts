import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSyntheticRepo, type SyntheticRepoOptions } from '../sidecar/demo/synthetic-repo.ts';
import { git } from '../testing/git.ts';
import { timed } from './util.ts';

/**
 * The benchmark's upstream repository, generated once per parameter set and kept outside
 * the repository. It is built in a temp dir beside its final place and renamed there with
 * a `complete.json` marker inside, so an interrupted generation is never reused.
 */

export type RepoParams = Required<SyntheticRepoOptions>;

export interface BenchRepo {
  /** Served as upstream root: the repository is `<root>/bench/repo.git`. */
  root: string;
  /** Path of the repository under `root`, as it appears in URLs. */
  path: string;
  params: RepoParams;
  stats: RepoStats;
  /** Whether this run generated it (false: found in the cache). */
  generated: boolean;
  generateSeconds?: number;
}

export interface RepoStats {
  objects: number;
  packBytes: number;
  refs: number;
  commits: number;
}

/**
 * Bump when generation or its post-processing changes: old cache entries then stop
 * matching instead of being measured as if they were the new repository.
 */
const GENERATOR_VERSION = 1;
const REPO_PATH = 'bench/repo.git';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function benchCacheDir(): string {
  const dir = resolve(process.env.GITMIRROR_BENCH_CACHE || join(homedir(), '.cache', 'gitmirror-bench'));
  const inside = relative(REPO_ROOT, dir);
  if (!inside.startsWith('..') && !inside.startsWith('/'))
    throw new Error(`the bench cache ${dir} must be outside the repository`);
  return dir;
}

export function paramsHash(params: RepoParams): string {
  const canonical = JSON.stringify({ v: GENERATOR_VERSION, ...sortKeys(params) });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

function sortKeys<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b))) as T;
}

export async function ensureBenchRepo(params: RepoParams, log: (line: string) => void): Promise<BenchRepo> {
  const cache = benchCacheDir();
  const final = join(cache, paramsHash(params));
  const marker = join(final, 'complete.json');
  const found = await readFile(marker, 'utf8').then(
    (text) => JSON.parse(text) as { stats: RepoStats },
    () => undefined,
  );
  if (found)
    return { root: join(final, 'upstream'), path: REPO_PATH, params, stats: found.stats, generated: false };

  await mkdir(cache, { recursive: true });
  const temp = await mkdtemp(join(cache, '.build-'));
  try {
    log(`generating the upstream repository (${describeParams(params)}) into ${final} ...`);
    const bare = join(temp, 'upstream', REPO_PATH);
    const [, seconds] = await timed(async () => {
      await createSyntheticRepo(bare, params);
      await prepareUpstream(bare);
    });
    const stats = await repoStats(bare);
    log(
      `generated in ${seconds.toFixed(0)} s: ${stats.objects} objects, ${(stats.packBytes / 2 ** 20).toFixed(0)} MiB packed, ${stats.refs} refs`,
    );
    await writeFile(
      join(temp, 'complete.json'),
      `${JSON.stringify({ params, stats, generatorVersion: GENERATOR_VERSION }, null, 2)}\n`,
    );
    await rename(temp, final).catch(async (err: NodeJS.ErrnoException) => {
      // A concurrent run finished the same parameters first; theirs is identical.
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
    return {
      root: join(final, 'upstream'),
      path: REPO_PATH,
      params,
      stats,
      generated: true,
      generateSeconds: seconds,
    };
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/**
 * Upstream as a hosting service keeps it: one pack with a reachability bitmap and a
 * commit-graph, so `clone --mirror` from it is as fast as a server can make it and the
 * cold-start comparison does not flatter the snapshot path.
 */
async function prepareUpstream(bare: string): Promise<void> {
  // A repack of the default repository takes minutes on a small machine.
  const slow = { cwd: bare, timeoutMs: 60 * 60_000 };
  await git(['-c', 'pack.threads=0', 'repack', '-a', '-d', '-b', '--quiet'], slow);
  await git(['commit-graph', 'write', '--reachable'], slow);
  await git(['config', 'http.receivepack', 'false'], { cwd: bare });
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

export function describeParams(p: RepoParams): string {
  return `${p.commits} commits × ${p.filesPerCommit} files of ${p.fileBytes} B (${p.noise} noise) over ${p.files} paths, ${p.refs} refs`;
}
