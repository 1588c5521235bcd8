import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { silentLogger } from '../../../core/log.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { EventRecorder } from '../../src/runtime/events.ts';
import { FakeCluster } from '../fakes/fake-cluster.ts';

const regarding = { apiVersion: 'v1', kind: 'Pod', namespace: 'ns', name: 'p1', uid: 'u1' };

describe('EventRecorder', () => {
  test('stamps the reporter and time, and drops repeats within the window', async () => {
    const cluster = new FakeCluster();
    const clock = new TestClock(Date.parse('2026-01-01T00:00:00Z'));
    const recorder = new EventRecorder({
      api: cluster,
      controller: 'c',
      instance: 'i',
      clock,
      logger: silentLogger(),
      dedupeWindowMs: 60_000,
    });
    const event = { regarding, type: 'Normal' as const, reason: 'Warm', action: 'Warmup', note: 'ok' };
    await recorder.record(event);
    await recorder.record(event);
    await recorder.record({ ...event, reason: 'Other' });
    assert.equal(cluster.events.length, 2);
    assert.equal(cluster.events[0]?.reportingController, 'c');
    assert.equal(cluster.events[0]?.eventTime.toISOString(), '2026-01-01T00:00:00.000Z');
    clock.advance(60_000);
    await recorder.record(event);
    assert.equal(cluster.events.length, 3);
  });

  test('a failing Events API never fails the caller', async () => {
    const cluster = new FakeCluster();
    cluster.failNext('createEvent', 'KUBE_FORBIDDEN');
    const recorder = new EventRecorder({
      api: cluster,
      controller: 'c',
      instance: 'i',
      clock: new TestClock(Date.parse('2026-01-01T00:00:00Z')),
      logger: silentLogger(),
    });
    await recorder.record({ regarding, type: 'Warning', reason: 'X', action: 'Y', note: 'z' });
    assert.equal(cluster.events.length, 0);
  });
});
