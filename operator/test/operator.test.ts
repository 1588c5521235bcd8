import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../core/log.ts';
import { TestClock } from '../../testing/test-clock.ts';
import type { GitMirror } from '../src/api/gitmirror.ts';
import type { Pod } from '../src/api/kubernetes.ts';
import { warmCondition } from '../src/fleet/members.ts';
import type { InformerLike } from '../src/kube/api.ts';
import { Operator } from '../src/operator.ts';
import { InformerSet, ResilientInformer } from '../src/runtime/informer.ts';
import { OperatorMetrics } from '../src/runtime/metrics.ts';
import { eventually } from './fakes/eventually.ts';
import { FakeCluster, type MemoryStore } from './fakes/fake-cluster.ts';
import { FakeSidecars } from './fakes/fake-sidecars.ts';
import { REPO_ID, REPO_URL, SETTINGS } from './fakes/harness.ts';

/** An informer over a fake cluster store: every put or delete is a watch event. */
function informerOver<T extends { metadata: { name: string; namespace?: string } }>(
  store: MemoryStore<T>,
): InformerLike<T> {
  const handlers: ((obj: T) => void)[] = [];
  store.listeners.push((obj) => {
    for (const h of handlers) h(obj);
  });
  return {
    on: (verb: string, cb: (obj: never) => void) => {
      if (verb === 'add') handlers.push(cb as (obj: T) => void);
    },
    start: async () => {},
    stop: async () => {},
    get: (name, namespace) => store.get(namespace ?? '', name),
    list: (namespace) => store.list(namespace),
  };
}

/**
 * An informer whose list fails (as while the API server is down) until `available` is set;
 * then it lists the store (an add per object) and passes on every later change.
 */
function unavailableInformer<T extends { metadata: { name: string; namespace?: string } }>(
  store: MemoryStore<T>,
): InformerLike<T> & { available: boolean; starts: number } {
  const handlers = new Map<string, ((obj: never) => void)[]>();
  const emit = (verb: string, value: unknown) => {
    for (const h of handlers.get(verb) ?? []) h(value as never);
  };
  let listed = false;
  store.listeners.push((obj) => {
    if (listed) emit('add', obj);
  });
  const informer = {
    available: false,
    starts: 0,
    on: (verb: string, cb: (obj: never) => void) => {
      handlers.set(verb, [...(handlers.get(verb) ?? []), cb]);
    },
    start: async () => {
      informer.starts++;
      if (!informer.available) return emit('error', new Error('connect ECONNREFUSED'));
      listed = true;
      for (const obj of store.list()) emit('add', obj);
    },
    stop: async () => {},
    get: (name: string, namespace?: string) => (listed ? store.get(namespace ?? '', name) : undefined),
    list: (namespace?: string) => (listed ? store.list(namespace) : []),
  };
  return informer;
}

function operatorOver(
  cluster: FakeCluster,
  sidecars: FakeSidecars,
  sources: { gitMirrors: InformerLike<GitMirror>; pods: InformerLike<Pod> },
) {
  const logger = silentLogger();
  const wrap = <T>(inner: InformerLike<T>) =>
    new InformerSet(
      new ResilientInformer(inner, {
        name: 't',
        logger,
        resyncMs: 60_000,
        restartBackoff: { baseMs: 5, maxMs: 10 },
      }),
    );
  return new Operator({
    api: cluster,
    gitMirrors: wrap(sources.gitMirrors),
    pods: wrap(sources.pods),
    sidecars,
    clock: new TestClock(Date.parse('2026-01-01T00:01:00Z')),
    logger,
    metrics: new OperatorMetrics(),
    settings: {
      ...SETTINGS,
      warmingRequeueMs: 20,
      workers: 2,
      warmupPollMs: 20,
      adminTokenSecret: 'tok',
      identity: 'op-0',
    },
  });
}

describe('Operator wiring', () => {
  test('events drive both controllers: a new pod is warmed, elected writer and the GitMirror turns Ready', async () => {
    const cluster = new FakeCluster();
    const sidecars = new FakeSidecars();
    const operator = operatorOver(cluster, sidecars, {
      gitMirrors: informerOver(cluster.gitMirrors),
      pods: informerOver(cluster.pods),
    });
    await operator.startInformers();
    assert.equal(operator.informersSynced(), true);
    cluster.addGitMirror('repo', { url: REPO_URL });
    const pod = cluster.addPod('p1');
    sidecars.of('ns/p1').readyAfterReads = 3;
    assert.ok(
      operator.podQueue.len() >= 1 && operator.gitMirrorQueue.len() >= 1,
      'events enqueue keys before leading',
    );
    void operator.startControllers();
    try {
      await eventually(
        () => warmCondition(cluster.pods.get('ns', 'p1')!)?.status === 'True',
        'the warm gate',
      );
      await eventually(() => cluster.gitMirrors.get('ns', 'repo')?.status?.writer === 'p1', 'the writer');
      const status = cluster.gitMirrors.get('ns', 'repo')?.status;
      assert.equal(status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
      assert.deepEqual(sidecars.writersOf(REPO_ID), ['ns/p1']);
      assert.equal(warmCondition(cluster.pods.get('ns', 'p1')!)?.reason, 'Warm');
      assert.equal(pod.metadata.uid, cluster.podPatches[0]?.uid);
      assert.equal(operator.applied.size, 1);
      cluster.pods.delete('ns', 'p1');
      assert.equal(operator.applied.size, 0, 'a deleted pod leaves nothing behind in memory');
    } finally {
      await operator.stop();
    }
  });
});

describe('a leader whose informers have not listed yet (a restart while the API server was down)', () => {
  test('reconciles nothing until every informer has listed: a warming pod is not opened as NoMirrors', async () => {
    const cluster = new FakeCluster();
    const sidecars = new FakeSidecars();
    cluster.addGitMirror('repo', { url: REPO_URL });
    cluster.addPod('p1');
    sidecars.of('ns/p1').readyAfterReads = 3;
    const gitMirrors = unavailableInformer(cluster.gitMirrors);
    const pods = unavailableInformer(cluster.pods);
    pods.available = true;
    const operator = operatorOver(cluster, sidecars, { gitMirrors, pods });
    await operator.startInformers();
    assert.equal(operator.informersSynced(), false);
    assert.ok(operator.podQueue.len() >= 1, 'the listed pod is queued');
    // Leading now: with the pod cache listed and the GitMirror cache still empty, a reconcile
    // would see a fleet that carries nothing and open the pod's gate before it is warm.
    void operator.startControllers();
    try {
      await eventually(() => gitMirrors.starts >= 3, 'the GitMirror informer to retry its list');
      assert.equal(cluster.podPatches.length, 0, 'a pod was reconciled against an unlisted cache');
      const synced = operator.whenInformersSynced();
      gitMirrors.available = true;
      assert.equal(await synced, true);
      await eventually(
        () => warmCondition(cluster.pods.get('ns', 'p1')!)?.status === 'True',
        'the warm gate once both caches listed',
      );
      const reasons = cluster.podPatches.map((p) => p.condition.reason);
      assert.ok(!reasons.includes('NoMirrors'), `gate reasons: ${reasons.join(', ')}`);
      assert.equal(warmCondition(cluster.pods.get('ns', 'p1')!)?.reason, 'Warm');
    } finally {
      await operator.stop();
    }
  });

  test('a stop while waiting for the caches ends the wait; the controllers never start', async () => {
    const cluster = new FakeCluster();
    const sidecars = new FakeSidecars();
    cluster.addPod('p1');
    const gitMirrors = unavailableInformer(cluster.gitMirrors);
    const pods = unavailableInformer(cluster.pods);
    pods.available = true;
    const operator = operatorOver(cluster, sidecars, { gitMirrors, pods });
    await operator.startInformers();
    const started = operator.startControllers();
    const campaign = operator.whenInformersSynced();
    await operator.stop();
    await started;
    assert.equal(await campaign, false, 'a stopped replica does not go on to campaign');
    gitMirrors.available = true;
    await sleep(50);
    assert.deepEqual(cluster.podPatches, []);
  });
});
