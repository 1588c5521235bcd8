import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { GitMirror } from '../src/api/gitmirror.ts';
import { warmCondition } from '../src/fleet/members.ts';
import type { Pod } from '../src/kube/types.ts';
import { silentLogger } from '../src/log.ts';
import { Operator } from '../src/operator.ts';
import { type InformerLike, InformerSet, ResilientInformer } from '../src/runtime/informer.ts';
import { OperatorMetrics } from '../src/runtime/metrics.ts';
import { eventually } from './fakes/eventually.ts';
import { FakeCluster, type MemoryStore } from './fakes/fake-cluster.ts';
import { FakeSidecars } from './fakes/fake-sidecars.ts';
import { ManualClock, REPO_ID, REPO_URL, SETTINGS } from './fakes/harness.ts';

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

describe('Operator wiring', () => {
  test('events drive both controllers: a new pod is warmed, elected writer and the GitMirror turns Ready', async () => {
    const cluster = new FakeCluster();
    const sidecars = new FakeSidecars();
    const logger = silentLogger();
    const wrap = <T>(inner: InformerLike<T>) =>
      new InformerSet(new ResilientInformer(inner, { name: 't', logger, resyncMs: 60_000 }));
    const operator = new Operator({
      api: cluster,
      gitMirrors: wrap<GitMirror>(informerOver(cluster.gitMirrors)),
      pods: wrap<Pod>(informerOver(cluster.pods)),
      sidecars,
      clock: new ManualClock('2026-01-01T00:01:00Z'),
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
    await operator.startInformers();
    assert.equal(operator.informersSynced(), true);
    cluster.addGitMirror('repo', { url: REPO_URL });
    const pod = cluster.addPod('p1');
    sidecars.of('ns/p1').readyAfterReads = 3;
    assert.ok(
      operator.podQueue.len() >= 1 && operator.gitMirrorQueue.len() >= 1,
      'events enqueue keys before leading',
    );
    operator.startControllers();
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
