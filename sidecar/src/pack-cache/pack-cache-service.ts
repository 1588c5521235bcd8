import { mkdir, rm, statfs } from 'node:fs/promises';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { GitRunner } from '../git/git-runner.ts';
import { FileSender } from './file-sender.ts';
import { PackCache, type PackCacheObserver } from './pack-cache.ts';

/** A tenth of the data volume: room for several full packs of a large mirror, far from filling it. */
export const DEFAULT_SHARE_OF_VOLUME = 0.1;

export interface PackCacheStart {
  /** The cache's directory on the data volume (swept at start). */
  dir: string;
  /** undefined: a tenth of the data volume's size; 0: off. */
  maxBytes?: number;
  ttlMs: number;
  git: GitRunner;
  logger: Logger;
  observer?: PackCacheObserver;
  clock?: Clock;
  generationTimeoutMs: number;
}

/**
 * Opens the pack cache as the sidecar runs it, in `dir` (swept at start), with git's version
 * in every key. Undefined when the budget is 0: upload-pack then runs without the hook,
 * exactly as before the cache existed, and nothing is left in `dir`.
 */
export async function startPackCache(options: PackCacheStart): Promise<PackCache | undefined> {
  const maxBytes = options.maxBytes ?? (await defaultBudget(options.dir));
  if (maxBytes === 0) {
    await rm(options.dir, { recursive: true, force: true });
    return undefined;
  }
  // Both start a process: side by side, so the sidecar's start waits for one.
  const [version, fileSender] = await Promise.all([options.git.version(), FileSender.find()]);
  const gitVersion = version.text;
  const cache = await PackCache.open({
    dir: options.dir,
    maxBytes,
    ttlMs: options.ttlMs,
    git: options.git,
    gitVersion,
    logger: options.logger,
    generationTimeoutMs: options.generationTimeoutMs,
    observer: options.observer,
    clock: options.clock,
    fileSender,
  });
  options.logger.info(
    { maxBytes, ttlSeconds: options.ttlMs / 1000, gitVersion, sendfile: fileSender !== undefined },
    fileSender
      ? 'pack cache on'
      : 'pack cache on; completed packs are copied (no perl to send them with sendfile)',
  );
  return cache;
}

/** A share of the data volume's size as the filesystem reports it (an emptyDir's sizeLimit is not visible here). */
async function defaultBudget(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  const fs = await statfs(dir);
  return Math.floor(fs.blocks * fs.bsize * DEFAULT_SHARE_OF_VOLUME);
}
