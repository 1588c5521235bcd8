import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { createSyntheticRepo, type SyntheticRepoOptions } from '../sidecar/demo/synthetic-repo.ts';
import { git } from '../testing/git.ts';
import {
  cacheDirOutsideRepo,
  ensureCached,
  prepareUpstream,
  type RepoStats,
  repoStats,
} from '../testing/repo-cache.ts';

export type { RepoStats } from '../testing/repo-cache.ts';

/**
 * The benchmark's upstream repository, generated once per parameter set and kept outside
 * the repository (testing/repo-cache.ts).
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

/**
 * Bump when generation or its post-processing changes: old cache entries then stop
 * matching instead of being measured as if they were the new repository.
 */
const GENERATOR_VERSION = 1;
const REPO_PATH = 'bench/repo.git';

export function benchCacheDir(): string {
  return cacheDirOutsideRepo('GITMIRROR_BENCH_CACHE', 'gitmirror-bench');
}

export function paramsHash(params: RepoParams): string {
  // The version first, then the sorted parameters: the digest of every entry cached so far.
  const sorted = Object.fromEntries(Object.entries(params).sort(([a], [b]) => a.localeCompare(b)));
  return createHash('sha256')
    .update(JSON.stringify({ v: GENERATOR_VERSION, ...sorted }))
    .digest('hex')
    .slice(0, 16);
}

export async function ensureBenchRepo(params: RepoParams, log: (line: string) => void): Promise<BenchRepo> {
  const entry = await ensureCached({
    cacheDir: benchCacheDir(),
    key: paramsHash(params),
    build: async (dir) => {
      log(`generating the upstream repository (${describeParams(params)}) into ${dir} ...`);
      const bare = join(dir, 'upstream', REPO_PATH);
      await createSyntheticRepo(bare, params);
      await prepareUpstream(bare);
      await git(['config', 'http.receivepack', 'false'], { cwd: bare });
      const stats = await repoStats(bare);
      log(
        `generated: ${stats.objects} objects, ${(stats.packBytes / 2 ** 20).toFixed(0)} MiB packed, ${stats.refs} refs`,
      );
      return { params, stats, generatorVersion: GENERATOR_VERSION };
    },
  });
  return {
    root: join(entry.dir, 'upstream'),
    path: REPO_PATH,
    params,
    stats: entry.info.stats,
    generated: entry.generated,
    generateSeconds: entry.generateSeconds,
  };
}

export function describeParams(p: RepoParams): string {
  return `${p.commits} commits × ${p.filesPerCommit} files of ${p.fileBytes} B (${p.noise} noise) over ${p.files} paths, ${p.refs} refs`;
}
