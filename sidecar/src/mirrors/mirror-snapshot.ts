import type { Logger } from '../../../core/log.ts';
import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { PublishOutcome, SnapshotService } from '../snapshot/snapshot-service.ts';
import { headCommit, refsDigest } from './git-mirror-ops.ts';
import type { Mirror } from './mirror.ts';

export interface MirrorSnapshotDeps {
  git: GitRunner;
  snapshots: SnapshotService;
  logger: Logger;
  metrics: SidecarMetrics;
}

/**
 * Fetch, then archive and publish. Runs as a job of the mirror, so no fetch can rewrite
 * packed-refs while the archive is being read. A mirror whose fetch failed is never
 * published: a replica restoring it would inherit whatever went wrong.
 */
export async function publishMirrorSnapshot(
  deps: MirrorSnapshotDeps,
  mirror: Mirror,
  signal: AbortSignal,
  fetch: (signal: AbortSignal) => Promise<void>,
): Promise<PublishOutcome> {
  mirror.snapshotStarted();
  try {
    if (!mirror.ready) throw new GitMirrorError('MIRROR_NOT_READY', `${mirror.id} is not ready`);
    await fetch(signal).catch((err: unknown) => {
      throw new GitMirrorError(
        'FETCH_FAILED',
        `not publishing: the fetch before the snapshot failed: ${describeError(err)}`,
      );
    });
    const ctx = mirror.gitContext(deps.git);
    const commit = await headCommit(ctx);
    if (!commit) throw new GitMirrorError('SNAPSHOT_SKIPPED', `${mirror.id} has no commits to snapshot`);
    const outcome = await deps.snapshots.publish(mirror.repo, {
      mirrorDir: mirror.dir,
      commit,
      refsDigest: await refsDigest(ctx),
      retain: mirror.settings.snapshot.retain,
      signal,
    });
    const { manifest } = outcome;
    mirror.snapshotFinished({ ok: true, result: outcome.result, latest: manifest });
    deps.metrics.snapshots.inc({ outcome: outcome.result });
    if (outcome.result === 'published')
      deps.metrics.snapshotBytes.inc({ direction: 'upload' }, manifest.sizeBytes);
    deps.logger.info(
      { mirror: mirror.id, result: outcome.result, key: manifest.key, bytes: manifest.sizeBytes },
      'snapshot',
    );
    return outcome;
  } catch (err) {
    mirror.snapshotFinished({ ok: false, error: describeError(err) });
    deps.metrics.snapshots.inc({ outcome: 'failed' });
    deps.logger.warn({ mirror: mirror.id, err: describeError(err) }, 'snapshot failed');
    throw err;
  }
}
