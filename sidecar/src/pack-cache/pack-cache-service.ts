import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { GitRunner } from '../git/git-runner.ts';
import type { Logger } from '../log/logger.ts';
import { MAX_SOCKET_PATH, PackHookServer } from './hook-server.ts';
import { PackCache, type PackCacheObserver, type PackCacheStats } from './pack-cache.ts';
import type { SpliceTicket } from './splice-ticket.ts';

/** A tenth of the data volume: room for several full packs of a large mirror, and far from filling it. */
export const DEFAULT_SHARE_OF_VOLUME = 0.1;
/** upload-pack's default keepalive (uploadpack.keepAlive). */
export const KEEPALIVE_MS = 5_000;

export interface PackCacheServiceOptions {
  dataDir: string;
  /** undefined: a tenth of the data volume's size; 0: off. */
  maxBytes?: number;
  ttlMs: number;
  git: GitRunner;
  logger: Logger;
  observer?: PackCacheObserver;
  generationTimeoutMs: number;
  /** The mirror a directory is (the hook's working directory), if it is a ready one. */
  resolveRepository(dir: string): { repoId: string; dir: string } | undefined;
}

/**
 * The pack cache as the sidecar runs it: the cache under `$DATA_DIR/pack-cache/packs`, the
 * hook socket beside it, and what upload-pack needs to use them. Absent (undefined from
 * `start`) when the budget is 0 or the socket cannot be placed, and then upload-pack runs
 * exactly as without it.
 */
export class PackCacheService {
  readonly cache: PackCache;
  private readonly hooks: PackHookServer;

  private constructor(cache: PackCache, hooks: PackHookServer) {
    this.cache = cache;
    this.hooks = hooks;
  }

  static async start(options: PackCacheServiceOptions): Promise<PackCacheService | undefined> {
    const dir = join(options.dataDir, 'pack-cache');
    const maxBytes = options.maxBytes ?? (await defaultBudget(options.dataDir));
    const socketPath = join(dir, 'hook.sock');
    if (maxBytes === 0) return undefined;
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      options.logger.warn(
        { socketPath },
        `pack cache off: its socket path is longer than ${MAX_SOCKET_PATH} bytes; use a shorter GITMIRROR_DATA_DIR`,
      );
      return undefined;
    }
    const gitVersion = (await options.git.run({ args: ['version'], timeoutMs: 30_000 })).stdout.trim();
    const cache = await PackCache.open({
      dir: join(dir, 'packs'),
      maxBytes,
      ttlMs: options.ttlMs,
      git: options.git,
      gitVersion,
      logger: options.logger,
      generationTimeoutMs: options.generationTimeoutMs,
      observer: options.observer,
    });
    const hooks = await PackHookServer.listen({
      socketPath,
      cache,
      logger: options.logger,
      resolveRepository: options.resolveRepository,
    });
    options.logger.info({ maxBytes, ttlSeconds: options.ttlMs / 1000, gitVersion }, 'pack cache on');
    return new PackCacheService(cache, hooks);
  }

  /** Arguments before `upload-pack` and the environment that make it ask the cache. */
  uploadPack(ticket?: SpliceTicket): { args: string[]; env: Record<string, string> } {
    return { args: this.hooks.uploadPackArgs(), env: { ...this.hooks.env(), ...ticket?.env } };
  }

  expectSplice(): SpliceTicket {
    return this.hooks.expectSplice();
  }

  stats(): PackCacheStats {
    return this.cache.stats();
  }

  async close(): Promise<void> {
    await this.hooks.close();
    await this.cache.close();
  }
}

async function defaultBudget(dataDir: string): Promise<number> {
  const fs = await statfs(dataDir);
  return Math.floor(fs.blocks * fs.bsize * DEFAULT_SHARE_OF_VOLUME);
}
