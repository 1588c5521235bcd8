import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { Logger } from '../log/logger.ts';
import type { UpstreamAnswer } from './batch-protocol.ts';
import type { LfsMetrics } from './lfs-metrics.ts';
import type { LfsRepository } from './lfs-service.ts';
import { lfsUrlOf } from './lfs-service.ts';
import type { LfsObjectCache } from './object-cache.ts';
import type { LfsObjectId } from './oid.ts';
import { lfsPointersAt, type PointerScope } from './pointer-scan.ts';
import type { UpstreamLfs } from './upstream-lfs.ts';

/** `spec.lfs.prefetch`: which refs' LFS objects the writer downloads after each fetch. */
export type LfsPrefetch = 'Head' | 'AllRefs' | 'None';

export interface PrefetchResult {
  /** Distinct objects the scope's trees point to. */
  objects: number;
  /** Already in the fleet's store (or held here and now copied there). */
  held: number;
  fetched: number;
  failed: number;
  /** The first failure, for status and logs. */
  error?: string;
}

const BATCH_OBJECTS = 100;
const DOWNLOADS_AT_ONCE = 4;

/**
 * Prefetch: after a fetch, the snapshot writer of a mirror downloads the LFS objects the
 * mirror's refs point to (HEAD's tree, or every ref's) into its cache and the fleet's store,
 * so the first CI job after a push finds them warm on whichever replica it reaches. Objects
 * the store has are skipped without a byte moved; the rest are asked of upstream's batch API
 * with the mirror's own credentials, 100 at a time, and downloaded a few at once through the
 * same verified, single-flight path clients use.
 */
export class LfsPrefetcher {
  private readonly deps: {
    git: GitRunner;
    objects: LfsObjectCache;
    upstream: UpstreamLfs;
    metrics: LfsMetrics;
    logger: Logger;
  };

  constructor(deps: LfsPrefetcher['deps']) {
    this.deps = deps;
  }

  async run(repository: LfsRepository & { dir: string }, scope: PointerScope): Promise<PrefetchResult> {
    const pointers = await lfsPointersAt(this.deps.git, repository.dir, scope);
    const result: PrefetchResult = { objects: pointers.length, held: 0, fetched: 0, failed: 0 };
    const where = await Promise.all(pointers.map((object) => this.deps.objects.locate(object)));
    const missing = pointers.filter((_, i) => where[i] === undefined);
    const heldHere = pointers.filter((_, i) => where[i] === 'local');
    result.held += where.filter((w) => w === 'store').length;
    this.deps.metrics.prefetchObjects.inc({ outcome: 'held' }, result.held);
    // Held here but not (yet) in the store: copy it, so the fleet has it.
    await this.download(heldHere, new Map(), result);
    for (let i = 0; i < missing.length; i += BATCH_OBJECTS) {
      const some = missing.slice(i, i + BATCH_OBJECTS);
      const actions = await this.deps.upstream
        .downloadActions({
          lfsUrl: lfsUrlOf(repository),
          objects: some,
          credentials: repository.mirror?.credentials,
        })
        .catch((err: unknown) => err as Error);
      await this.download(some, actions, result);
    }
    const line = { mirror: repository.repo.id, scope, ...result };
    this.deps.logger[result.failed > 0 ? 'warn' : 'info'](line, 'LFS prefetch');
    return result;
  }

  /** Ensures each object is held and stored, a few at a time, with upstream's actions for those it needs. */
  private async download(
    objects: LfsObjectId[],
    actions: Map<string, UpstreamAnswer> | Error,
    result: PrefetchResult,
  ): Promise<void> {
    const queue = [...objects];
    const worker = async () => {
      for (let object = queue.shift(); object; object = queue.shift()) {
        try {
          const source = await this.deps.objects.ensure(object, () => this.openAtUpstream(object, actions));
          this.tally(result, source === 'upstream' ? 'fetched' : 'held');
        } catch (err) {
          result.error ??= describeError(err);
          this.tally(result, 'failed');
        }
      }
    };
    await Promise.all(Array.from({ length: DOWNLOADS_AT_ONCE }, worker));
  }

  private openAtUpstream(object: LfsObjectId, actions: Map<string, UpstreamAnswer> | Error) {
    if (actions instanceof Error) throw actions;
    const answer = actions.get(object.oid);
    if (!answer?.action)
      throw new GitMirrorError(
        'UPSTREAM_FAILED',
        `upstream has no download for LFS object ${object.oid}: ${answer?.error?.message ?? 'not asked'}`,
      );
    return this.deps.upstream.openObject(answer.action, object);
  }

  private tally(result: PrefetchResult, outcome: 'held' | 'fetched' | 'failed'): void {
    result[outcome]++;
    this.deps.metrics.prefetchObjects.inc({ outcome });
  }
}
