import { join } from 'node:path';
import type { StorageShortfall } from '../../../core/admin-api.ts';
import type { DiskBudget } from '../budget/disk-budget.ts';
import { describeShortfall, shortfallOf } from '../budget/disk-budget.ts';
import { type GuardedWrite, startGuardedWrite } from '../budget/guarded-write.ts';
import { MirrorBytes } from '../budget/mirror-bytes.ts';
import { readPackDir } from '../budget/pack-stats.ts';
import {
  type ArchiveSize,
  cloneBytes,
  repackTempBytes,
  restoreBytes,
  UNKNOWN_WRITE_BYTES,
} from '../budget/size-estimates.ts';
import { treeBytes } from '../budget/tree-usage.ts';
import type { Mirror } from './mirror.ts';

export interface MirrorStorageOptions {
  budget: DiskBudget;
  mirrors: () => Iterable<Mirror>;
  /** Whether a job (fetch, repack, snapshot, warm-up) runs on the mirror now. */
  busy: (mirror: Mirror) => boolean;
  /** Removes an evicted mirror for good, as `DELETE /v1/mirrors/{id}` does. */
  remove: (id: string) => Promise<void>;
}

/**
 * The mirrors' side of the disk budget: each write to a mirror (restore, clone, fetch,
 * repack) reserves its estimate before it starts and, where it can be measured, is watched
 * as it grows; each mirror is measured once its write is done. The mirrors are a byte holder
 * whose on-demand members may be evicted, never the configured ones.
 */
export class MirrorStorage {
  readonly budget: DiskBudget;
  private readonly options: MirrorStorageOptions;

  constructor(options: MirrorStorageOptions) {
    this.options = options;
    this.budget = options.budget;
    this.budget.add(
      new MirrorBytes({
        mirrors: () => this.held(),
        remove: options.remove,
      }),
    );
  }

  /** Measures the mirror's directory now: after its warm-up, a fetch or a repack. */
  async measure(mirror: Mirror): Promise<void> {
    mirror.measured(await treeBytes(mirror.dir));
  }

  /** Space for extracting `archive`: refused before the download starts when it cannot fit. */
  restore(mirror: Mirror, archive: ArchiveSize, signal: AbortSignal): Promise<GuardedWrite> {
    return startGuardedWrite({
      budget: this.budget,
      purpose: `restore of ${mirror.id}`,
      bytes: restoreBytes(archive),
      signal,
    });
  }

  /** Space for a clone into `tempDir`, sized from the best hint there is and watched as it grows. */
  clone(mirror: Mirror, tempDir: string, hints: { snapshot?: ArchiveSize }, signal: AbortSignal) {
    return startGuardedWrite({
      budget: this.budget,
      purpose: `clone of ${mirror.id}`,
      bytes: cloneBytes({ snapshot: hints.snapshot, mirrorBytes: mirror.diskBytes }).bytes,
      measure: () => treeBytes(tempDir),
      signal,
    });
  }

  /** Space for what a fetch (or repack) adds to objects/pack, watched as it grows. */
  async fetch(mirror: Mirror, signal: AbortSignal): Promise<GuardedWrite> {
    return this.packWrite(mirror, { purpose: `fetch of ${mirror.id}`, bytes: UNKNOWN_WRITE_BYTES, signal });
  }

  /** Space for a geometric repack's new pack, indexes and commit-graph beside the old ones. */
  async repack(mirror: Mirror, signal: AbortSignal): Promise<GuardedWrite> {
    const stats = await readPackDir(mirror.dir);
    const info = join(mirror.dir, 'objects', 'info');
    const commitGraphBytes =
      (await treeBytes(join(info, 'commit-graph'))) + (await treeBytes(join(info, 'commit-graphs')));
    const bytes = repackTempBytes({ ...stats, commitGraphBytes });
    return this.packWrite(mirror, { purpose: `repack of ${mirror.id}`, bytes, signal });
  }

  /**
   * Runs a fetch or repack of a ready mirror within the budget: its space is reserved first (a
   * repack that cannot fit is refused, INSUFFICIENT_STORAGE), it is stopped if it outgrows what
   * the budget can give, and the mirror is measured after.
   */
  async within(
    mirror: Mirror,
    kind: 'fetch' | 'repack',
    signal: AbortSignal,
    work: (signal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    const write = await this[kind](mirror, signal);
    try {
      await work(write.signal).catch((err: unknown) => {
        throw write.exhausted() ?? err;
      });
    } finally {
      await write.finish();
      await this.measure(mirror).catch(() => {});
    }
  }

  private async packWrite(
    mirror: Mirror,
    write: { purpose: string; bytes: number; signal: AbortSignal },
  ): Promise<GuardedWrite> {
    const packDir = join(mirror.dir, 'objects', 'pack');
    const before = await treeBytes(packDir);
    return startGuardedWrite({
      budget: this.budget,
      ...write,
      measure: async () => Math.max(0, (await treeBytes(packDir)) - before),
    });
  }

  private *held() {
    for (const mirror of this.options.mirrors()) {
      yield {
        id: mirror.id,
        bytes: mirror.diskBytes,
        configured: mirror.origin === 'configured',
        lastServedAt: mirror.lastServedAt ?? 0,
        busy: !mirror.ready || mirror.activeServes > 0 || this.options.busy(mirror),
      };
    }
  }
}

/** The wire form of a refusal, for the mirror's status; undefined for any other error. */
export function storageShortfall(err: unknown): StorageShortfall | undefined {
  const s = shortfallOf(err);
  if (!s) return undefined;
  return {
    neededBytes: s.neededBytes,
    missingBytes: s.missingBytes,
    limitBytes: s.limitBytes,
    message: describeShortfall(s),
  };
}
