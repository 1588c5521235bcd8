import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../../core/log.ts';
import { Controller, type ReconcileResult } from '../../src/runtime/controller.ts';
import { OperatorMetrics } from '../../src/runtime/metrics.ts';
import { ItemBackoffRateLimiter, WorkQueue } from '../../src/runtime/workqueue.ts';
import { eventually } from '../fakes/eventually.ts';

function controller(reconcile: (key: string) => Promise<ReconcileResult>, workers = 4) {
  const metrics = new OperatorMetrics();
  const queue = new WorkQueue(new ItemBackoffRateLimiter({ baseMs: 10, maxMs: 40 }));
  const c = new Controller({ name: 'test', queue, reconcile, workers, logger: silentLogger(), metrics });
  return { c, queue, metrics };
}

async function counter(metrics: OperatorMetrics, result: string): Promise<number> {
  const values = (await metrics.reconcileTotal.get()).values;
  return values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe('Controller', () => {
  test('never runs one key on two workers at once, and loses no change', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const { c, queue } = controller(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(15);
      running--;
      runs++;
      return {};
    });
    c.start();
    queue.add('k');
    await sleep(5);
    queue.add('k');
    queue.add('k');
    await eventually(() => runs === 2, 'the second run');
    await sleep(30);
    await c.stop();
    assert.equal(maxRunning, 1);
    assert.equal(runs, 2, 'the change during the first run is seen by exactly one more run');
  });

  test('runs different keys in parallel up to the worker count', async () => {
    let running = 0;
    let maxRunning = 0;
    let finished = 0;
    const { c, queue } = controller(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(20);
      running--;
      finished++;
      return {};
    }, 2);
    c.start();
    for (const k of ['a', 'b', 'c', 'd']) queue.add(k);
    await eventually(() => finished === 4, 'all four keys');
    await c.stop();
    assert.equal(maxRunning, 2);
  });

  test('retries a failing key with growing delays, then forgets its failures on success', async () => {
    const at: number[] = [];
    const { c, queue, metrics } = controller(async () => {
      at.push(Date.now());
      if (at.length < 4) throw new Error('boom');
      return {};
    });
    c.start();
    queue.add('k');
    await eventually(() => at.length === 4 && !queue.isProcessing('k'), 'the fourth attempt');
    await c.stop();
    assert.equal(at.length, 4);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    assert.ok(gaps[2]! >= gaps[0]!, `gaps ${gaps.join(',')} grow`);
    assert.equal(queue.retries('k'), 0);
    assert.equal(await counter(metrics, 'error'), 3);
    assert.equal(await counter(metrics, 'success'), 1);
  });

  test('requeues after the delay a reconcile asks for', async () => {
    let runs = 0;
    const { c, queue, metrics } = controller(async () => (++runs < 3 ? { requeueAfterMs: 10 } : {}));
    c.start();
    queue.add('k');
    await eventually(() => runs === 3 && !queue.isProcessing('k'), 'the third run');
    await sleep(30);
    await c.stop();
    assert.equal(runs, 3);
    assert.equal(await counter(metrics, 'requeue_after'), 2);
  });

  test('stop() waits for the reconcile in flight', async () => {
    let finished = false;
    const { c, queue } = controller(async () => {
      await sleep(30);
      finished = true;
      return {};
    });
    c.start();
    queue.add('k');
    await sleep(5);
    await c.stop();
    assert.equal(finished, true);
  });
});
