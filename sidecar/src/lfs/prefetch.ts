import type { LfsPrefetchStatus } from '../../../core/admin-api.ts';
import type { Logger } from '../../../core/log.ts';
import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { UpstreamAnswer } from './batch-protocol.ts';
import type { LfsMetrics } from './lfs-metrics.ts';
import type { LfsRepository } from './lfs-service.ts';
import { lfsUrlOf } from './lfs-service.ts';
import type { LfsObjectCache } from './object-cache.ts';
import type { LfsObjectId } from './oid.ts';
import { lfsPointersAt, type PointerScope } from './pointer-scan.ts';
import type { UpstreamLfs } from './upstream-lfs.ts';

/** What one prefetch run found and did (`LfsPrefetchStatus` without its time). */
export type PrefetchResult = Omit<LfsPrefetchStatus, 'finishedAt'>;

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

/**
 * When to prefetch: after each fetch of a mirror, one run at a time in the whole sidecar
 * (downloads compete with serving for the link), at most one run per mirror queued behind a
 * running one (a burst of fetches costs one more run, not one each).
 */
export class PrefetchQueue {
  private readonly logger: Logger;
  private readonly running = new Map<string, Promise<void>>();
  /** The latest job asked for while a run of its key was under way (the mirror's settings may have changed). */
  private readonly again = new Map<string, () => Promise<void>>();
  private chain: Promise<void> = Promise.resolve();

  constructor(options: { logger: Logger }) {
    this.logger = options.logger;
  }

  /** Runs `job` for `key` now, or once more after the run under way. */
  request(key: string, job: () => Promise<void>): void {
    if (this.running.has(key)) {
      this.again.set(key, job);
      return;
    }
    const run = this.enqueue(key, job).finally(() => {
      this.running.delete(key);
      const next = this.again.get(key);
      this.again.delete(key);
      if (next) this.request(key, next);
    });
    this.running.set(key, run);
  }

  /** Resolves once nothing is running or queued (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  private enqueue(key: string, job: () => Promise<void>): Promise<void> {
    const run = this.chain.then(job).catch((err: unknown) => {
      this.logger.warn({ mirror: key, err: describeError(err) }, 'LFS prefetch failed');
    });
    this.chain = run;
    return run;
  }
}
