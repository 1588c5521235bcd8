import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/log.ts';
import { LeaderElector } from '../../src/runtime/leader-election.ts';
import { eventually } from '../fakes/eventually.ts';
import { FakeCluster } from '../fakes/fake-cluster.ts';
import { ManualClock } from '../fakes/harness.ts';

function elector(cluster: FakeCluster, identity: string, clock = new ManualClock('2026-01-01T00:00:00Z')) {
  const events: string[] = [];
  const e = new LeaderElector({
    api: cluster,
    namespace: 'ops',
    name: 'gitmirror-operator',
    identity,
    clock,
    logger: silentLogger(),
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 5,
    onStartedLeading: () => events.push('started'),
    onStoppedLeading: () => events.push('stopped'),
  });
  return { e, events, clock };
}

describe('LeaderElector', () => {
  test('takes a free lease, renews it and releases it on shutdown', async () => {
    const cluster = new FakeCluster();
    const a = elector(cluster, 'a');
    const run = a.e.run();
    await eventually(() => a.e.isLeader(), 'leadership');
    assert.deepEqual(a.events, ['started']);
    const lease = cluster.leases.get('ops/gitmirror-operator');
    assert.equal(lease?.spec.holderIdentity, 'a');
    assert.equal(lease?.spec.leaseDurationSeconds, 15);
    await a.e.release();
    await run;
    assert.equal(cluster.leases.get('ops/gitmirror-operator')?.spec.holderIdentity, '');
  });

  test('a second candidate waits while the holder renews, and takes over after a release', async () => {
    const cluster = new FakeCluster();
    const a = elector(cluster, 'a');
    const b = elector(cluster, 'b');
    const runA = a.e.run();
    await eventually(() => a.e.isLeader(), 'a leading');
    const runB = b.e.run();
    await sleep(30);
    assert.deepEqual(b.events, []);
    assert.equal(b.e.isLeader(), false);
    await a.e.release();
    await runA;
    await eventually(() => b.e.isLeader(), 'b taking over');
    assert.deepEqual(b.events, ['started']);
    assert.equal(cluster.leases.get('ops/gitmirror-operator')?.spec.leaseTransitions, 1);
    await b.e.release();
    await runB;
  });

  test('takes over a lease whose holder stopped renewing, judged by its own clock', async () => {
    const cluster = new FakeCluster();
    const now = new Date('2030-01-01T00:00:00Z');
    await cluster.createLease('ops', {
      metadata: { name: 'gitmirror-operator' },
      spec: { holderIdentity: 'dead', leaseDurationSeconds: 15, renewTime: now, acquireTime: now },
    });
    const b = elector(cluster, 'b');
    const run = b.e.run();
    await sleep(20);
    assert.deepEqual(
      b.events,
      [],
      'a renewTime in the future (skewed clock) does not matter; observed time does',
    );
    b.clock.advance(15_000);
    await eventually(() => b.e.isLeader(), 'b taking over');
    assert.deepEqual(b.events, ['started']);
    await b.e.release();
    await run;
  });

  test('gives up leadership when it cannot renew within the deadline', async () => {
    const cluster = new FakeCluster();
    const a = elector(cluster, 'a');
    const run = a.e.run();
    await eventually(() => a.e.isLeader(), 'leadership');
    for (let i = 0; i < 50; i++) cluster.failNext('readLease', 'KUBE_UNAVAILABLE');
    a.clock.advance(10_000);
    await run;
    assert.deepEqual(a.events, ['started', 'stopped']);
    assert.equal(a.e.isLeader(), false);
  });

  test('of two candidates racing for a new lease exactly one wins', async () => {
    const cluster = new FakeCluster();
    const a = elector(cluster, 'a');
    const b = elector(cluster, 'b');
    const runs = [a.e.run(), b.e.run()];
    await eventually(() => a.e.isLeader() || b.e.isLeader(), 'a leader');
    await sleep(30);
    assert.equal([a.e.isLeader(), b.e.isLeader()].filter(Boolean).length, 1);
    await Promise.all([a.e.release(), b.e.release()]);
    await Promise.all(runs);
  });
});
