import type { Clock } from '../../../core/clock.ts';
import { silentLogger } from '../../../core/log.ts';
import { InstallationTokens } from '../../../github/src/token-cache.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { keyOf } from '../../src/api/gitmirror.ts';
import { AppliedSpecs } from '../../src/fleet/mirror-sync.ts';
import { GitMirrorReconciler, type ReconcileSettings } from '../../src/gitmirror/reconcile.ts';
import type { ReconcileResult } from '../../src/runtime/controller.ts';
import { EventRecorder } from '../../src/runtime/events.ts';
import { OperatorMetrics } from '../../src/runtime/metrics.ts';
import { AdminTokens } from '../../src/sidecar/admin-token.ts';
import { PodReconciler } from '../../src/warmup/pod-reconcile.ts';
import { FakeCluster } from './fake-cluster.ts';
import { FakeSidecars } from './fake-sidecars.ts';

export const SETTINGS: ReconcileSettings = {
  adminPort: 9090,
  warmingRequeueMs: 10_000,
  maxSteadyRequeueMs: 300_000,
  restoreRetryMs: 60_000,
  cleanupGraceMs: 120_000,
};
export const POLL_MS = 5_000;
export const TOKEN_SECRET = 'gitmirror-admin-token';

/** The two reconcilers over one fake cluster and fake sidecars, as one operator replica. */
export function replica(cluster: FakeCluster, sidecars: FakeSidecars, clock: Clock) {
  const logger = silentLogger();
  const metrics = new OperatorMetrics();
  const shared = {
    api: cluster,
    stores: cluster.stores,
    sidecars,
    tokens: new AdminTokens(cluster, TOKEN_SECRET),
    applied: new AppliedSpecs(),
    // A new replica's cache starts empty, as a new leader's does; jitter fixed for exact times.
    githubTokens: new InstallationTokens({ clock, random: () => 0.5 }),
    events: new EventRecorder({
      api: cluster,
      controller: 'gitmirror.dev/operator',
      instance: 'test',
      clock,
      logger,
      dedupeWindowMs: 0,
    }),
    clock,
    logger,
  };
  const gitMirrors = new GitMirrorReconciler({ ...shared, settings: SETTINGS });
  const pods = new PodReconciler({
    ...shared,
    metrics,
    settings: { adminPort: SETTINGS.adminPort, pollMs: POLL_MS, restoreRetryMs: SETTINGS.restoreRetryMs },
  });
  return { gitMirrors, pods, metrics };
}

export function harness() {
  const cluster = new FakeCluster();
  const sidecars = new FakeSidecars();
  const clock = new TestClock(Date.parse('2026-01-01T00:01:00Z'));
  let current = replica(cluster, sidecars, clock);
  return {
    cluster,
    sidecars,
    clock,
    get metrics() {
      return current.metrics;
    },
    gm: (name: string, namespace = 'ns'): Promise<ReconcileResult> =>
      current.gitMirrors.reconcile(`${namespace}/${name}`),
    pod: (name: string, namespace = 'ns'): Promise<ReconcileResult> =>
      current.pods.reconcile(`${namespace}/${name}`),
    /** A new leader takes over: same cluster and sidecars, nothing kept in memory. */
    failover(): void {
      current = replica(cluster, sidecars, clock);
    },
    /** Reconciles every GitMirror and pod, `rounds` times, swallowing retryable errors. */
    async settle(rounds = 3): Promise<void> {
      for (let i = 0; i < rounds; i++) {
        for (const gm of cluster.gitMirrors.list())
          await current.gitMirrors.reconcile(keyOf(gm.metadata)).catch(() => {});
        for (const pod of cluster.pods.list())
          await current.pods.reconcile(keyOf(pod.metadata)).catch(() => {});
      }
    },
  };
}

export const REPO_URL = 'https://github.com/org/repo.git';
export const REPO_ID = 'github.com/org/repo';
