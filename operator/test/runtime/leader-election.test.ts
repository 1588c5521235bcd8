import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { systemClock } from '../../../core/clock.ts';
import { silentLogger } from '../../../core/log.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { LeaderElector } from '../../src/runtime/leader-election.ts';
import { eventually } from '../fakes/eventually.ts';
import { FakeCluster } from '../fakes/fake-cluster.ts';

function elector(
  cluster: FakeCluster,
  identity: string,
  clock = new TestClock(Date.parse('2026-01-01T00:00:00Z')),
) {
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

  test('renews for as long as it leads without piling up abort listeners', async () => {
    // AbortSignal has no leak warning, so count live 'abort' listeners per signal directly.
    const live = new Map<AbortSignal, number>();
    let most = 0;
    const proto = AbortSignal.prototype;
    const { addEventListener: add, removeEventListener: remove } = proto;
    proto.addEventListener = function (this: AbortSignal, ...args: Parameters<typeof add>) {
      if (args[0] === 'abort') most = Math.max(most, live.set(this, (live.get(this) ?? 0) + 1).get(this)!);
      return add.apply(this, args);
    } as typeof add;
    proto.removeEventListener = function (this: AbortSignal, ...args: Parameters<typeof remove>) {
      if (args[0] === 'abort') live.set(this, (live.get(this) ?? 1) - 1);
      return remove.apply(this, args);
    } as typeof remove;
    try {
      const cluster = new FakeCluster();
      const a = elector(cluster, 'a');
      const run = a.e.run();
      await eventually(() => a.e.isLeader(), 'leadership');
      await sleep(200); // retryPeriodMs is 5: dozens of renewals
      await a.e.release();
      await run;
      assert.ok(most <= 3, `at most a few live abort listeners at once, saw ${most}`);
    } finally {
      proto.addEventListener = add;
      proto.removeEventListener = remove;
    }
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

  test('steps down within the renew deadline when the API server holds its renewal (no answer at all)', async () => {
    const cluster = new FakeCluster();
    let hang = false;
    const api = {
      readLease: (ns: string, name: string) =>
        hang ? new Promise<never>(() => {}) : cluster.readLease(ns, name),
      createLease: cluster.createLease.bind(cluster),
      replaceLease: cluster.replaceLease.bind(cluster),
    };
    const events: string[] = [];
    const e = new LeaderElector({
      api,
      namespace: 'ops',
      name: 'gitmirror-operator',
      identity: 'a',
      clock: systemClock,
      logger: silentLogger(),
      leaseDurationMs: 1_500,
      renewDeadlineMs: 1_000,
      retryPeriodMs: 50,
      onStartedLeading: () => events.push('started'),
      onStoppedLeading: () => events.push('stopped'),
    });
    const run = e.run();
    await eventually(() => e.isLeader(), 'leadership');
    const renewed = Date.parse(
      String(cluster.leases.get('ops/gitmirror-operator')?.spec.renewTime?.toISOString()),
    );
    hang = true;
    // A standby takes over once the lease has not changed for leaseDuration (1.5 s): by then
    // this leader must have stepped down, though its renewal never came back.
    await eventually(() => events.includes('stopped'), 'stepping down', 1_400);
    assert.ok(Date.now() - renewed < 1_500, `stepped down ${Date.now() - renewed} ms after the last renewal`);
    assert.equal(e.isLeader(), false);
    await run;
  });

  test('a candidate whose attempt the API server holds tries again and leads once it answers', async () => {
    const cluster = new FakeCluster();
    let held = 0;
    const api = {
      readLease: (ns: string, name: string) =>
        held++ === 0 ? new Promise<never>(() => {}) : cluster.readLease(ns, name),
      createLease: cluster.createLease.bind(cluster),
      replaceLease: cluster.replaceLease.bind(cluster),
    };
    const e = new LeaderElector({
      api,
      namespace: 'ops',
      name: 'gitmirror-operator',
      identity: 'b',
      clock: systemClock,
      logger: silentLogger(),
      leaseDurationMs: 1_500,
      renewDeadlineMs: 100,
      retryPeriodMs: 10,
      onStartedLeading: () => {},
      onStoppedLeading: () => {},
    });
    const run = e.run();
    await eventually(() => e.isLeader(), 'leadership after a held attempt', 2_000);
    assert.ok(held >= 2);
    await e.release();
    await run;
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
