import { cp, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createSyntheticRepo, type SyntheticRepoOptions } from '../../sidecar/demo/synthetic-repo.ts';
import { git } from '../../testing/git.ts';
import {
  cacheDirOutsideRepo,
  ensureCached,
  paramsDigest,
  prepareUpstream,
  type RepoStats,
  repoStats,
} from '../../testing/repo-cache.ts';
import type { UpstreamRepo } from '../scenarios/support/environment.ts';
import type { RepoInfo } from './record.ts';

/**
 * The soak's three upstream repositories, of different sizes, generated deterministically
 * once and cached outside the repository (`GITMIRROR_SOAK_CACHE`, default
 * `~/.cache/gitmirror-soak`); each run copies them, since its pushers change them.
 *
 * `large` has over 100k objects in a small pack (short text files): the object count is what
 * makes clones, fsck, restores and repacks work hard, and bytes would only cost the shared
 * machine disk and time without telling more.
 */

export const SOAK_REPOS: { name: RepoInfo['size']; params: Required<SyntheticRepoOptions> }[] = [
  {
    name: 'small',
    params: { commits: 300, filesPerCommit: 4, files: 200, fileBytes: 512, refs: 20, noise: 'hex', seed: 11 },
  },
  {
    name: 'medium',
    params: {
      commits: 1500,
      filesPerCommit: 4,
      files: 800,
      fileBytes: 512,
      refs: 30,
      noise: 'hex',
      seed: 12,
    },
  },
  {
    name: 'large',
    params: {
      commits: 11_000,
      filesPerCommit: 4,
      files: 2000,
      fileBytes: 512,
      refs: 40,
      noise: 'hex',
      seed: 13,
    },
  },
];

/** Bump when generation changes, so old cache entries stop matching. */
const GENERATOR_VERSION = 1;

export interface CachedSoakRepo {
  name: RepoInfo['size'];
  bare: string;
  stats: RepoStats;
}

export async function ensureSoakRepos(log: (line: string) => void): Promise<CachedSoakRepo[]> {
  const cacheDir = cacheDirOutsideRepo('GITMIRROR_SOAK_CACHE', 'gitmirror-soak');
  const repos: CachedSoakRepo[] = [];
  for (const { name, params } of SOAK_REPOS) {
    const entry = await ensureCached({
      cacheDir,
      key: `${name}-${paramsDigest({ v: GENERATOR_VERSION, ...params })}`,
      build: async (dir) => {
        log(`generating the ${name} upstream repository (${params.commits} commits) ...`);
        const bare = join(dir, 'repo.git');
        await createSyntheticRepo(bare, params);
        await prepareUpstream(bare);
        return { params, stats: await repoStats(bare) };
      },
    });
    repos.push({ name, bare: join(entry.dir, 'repo.git'), stats: entry.info.stats });
  }
  return repos;
}

/**
 * Copies of the cached repositories under `root` as the upstream serves them
 * (`root/<name>.git`), each with a bare clone beside it that the pusher commits in and
 * pushes from (`root/<name>-pusher.git`, hard-linked objects, so it costs no copy).
 */
export async function copySoakRepos(
  root: string,
  cached: CachedSoakRepo[],
): Promise<Map<string, UpstreamRepo>> {
  const repos = new Map<string, UpstreamRepo>();
  await mkdir(root, { recursive: true });
  for (const repo of cached) {
    const bare = join(root, `${repo.name}.git`);
    await cp(repo.bare, bare, { recursive: true });
    // Clients' partial clones are passed through to upstream while a mirror is cold.
    await git(['config', 'uploadpack.allowFilter', 'true'], { cwd: bare });
    const work = join(root, `${repo.name}-pusher.git`);
    await git(['clone', '--bare', '--quiet', bare, work]);
    repos.set(repo.name, { bare, work });
  }
  return repos;
}
