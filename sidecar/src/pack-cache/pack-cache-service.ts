import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { GitRunner } from '../git/git-runner.ts';
import type { Logger } from '../log/logger.ts';
import { PackCache, type PackCacheObserver } from './pack-cache.ts';

/** A tenth of the data volume: room for several full packs of a large mirror, far from filling it. */
export const DEFAULT_SHARE_OF_VOLUME = 0.1;

export interface PackCacheStart {
  dataDir: string;
  /** undefined: a tenth of the data volume's size; 0: off. */
  maxBytes?: number;
  ttlMs: number;
  git: GitRunner;
  logger: Logger;
  observer?: PackCacheObserver;
  generationTimeoutMs: number;
}

/**
 * Opens the pack cache as the sidecar runs it, under `$DATA_DIR/pack-cache/` (swept at
 * start), with git's version in every key. Undefined when the budget is 0: upload-pack
 * then runs without the hook, exactly as before the cache existed.
 */
export async function startPackCache(options: PackCacheStart): Promise<PackCache | undefined> {
  const maxBytes = options.maxBytes ?? (await defaultBudget(options.dataDir));
  if (maxBytes === 0) return undefined;
  const gitVersion = (await options.git.run({ args: ['version'], timeoutMs: 30_000 })).stdout.trim();
  const cache = await PackCache.open({
    dir: join(options.dataDir, 'pack-cache'),
    maxBytes,
    ttlMs: options.ttlMs,
    git: options.git,
    gitVersion,
    logger: options.logger,
    generationTimeoutMs: options.generationTimeoutMs,
    observer: options.observer,
  });
  options.logger.info({ maxBytes, ttlSeconds: options.ttlMs / 1000, gitVersion }, 'pack cache on');
  return cache;
}

/** The data volume's size as the filesystem reports it (an emptyDir's sizeLimit is not visible here). */
async function defaultBudget(dataDir: string): Promise<number> {
  const fs = await statfs(dataDir);
  return Math.floor(fs.blocks * fs.bsize * DEFAULT_SHARE_OF_VOLUME);
}
