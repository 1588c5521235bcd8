import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { OperatorError } from '../../src/errors/operator-error.ts';
import { Controller, type ReconcileResult } from '../../src/runtime/controller.ts';
import { OperatorMetrics } from '../../src/runtime/metrics.ts';
import { ItemBackoffRateLimiter, WorkQueue } from '../../src/runtime/workqueue.ts';
import { eventually } from '../fakes/eventually.ts';

function controller(
  reconcile: (key: string) => Promise<ReconcileResult>,
  options: { workers?: number; stalledRecheckMs?: number } = {},
) {
  const metrics = new OperatorMetrics();
  const queue = new WorkQueue(new ItemBackoffRateLimiter({ baseMs: 10, maxMs: 40 }));
  const logs: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const c = new Controller({
    name: 'test',
    queue,
    reconcile,
    workers: options.workers ?? 4,
    logger,
    metrics,
    stalledRecheckMs: options.stalledRecheckMs,
  });
  const warnings = () => logs.filter((l) => l.level >= 40).map((l) => l.msg);
  return { c, queue, metrics, warnings };
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
    const { c, queue } = controller(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(20);
        running--;
        finished++;
        return {};
      },
      { workers: 2 },
    );
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

  test('a transient error is logged as a failure and retried with backoff', async () => {
    let runs = 0;
    const { c, queue, warnings } = controller(async () => {
      if (++runs < 3) throw new OperatorError('SIDECAR_TIMEOUT', 'no answer');
      return {};
    });
    c.start();
    queue.add('k');
    await eventually(() => runs === 3 && !queue.isProcessing('k'), 'the third run');
    await c.stop();
    assert.deepEqual(warnings(), [
      'reconcile failed; retrying with backoff',
      'reconcile failed; retrying with backoff',
    ]);
  });

  test('a waiting error requeues after its time, without backoff or a failure log', async () => {
    const at: number[] = [];
    const { c, queue, metrics, warnings } = controller(async () => {
      at.push(Date.now());
      if (at.length < 4)
        throw new OperatorError('WRITER_HANDOVER_BLOCKED', 'the old writer answers no PUT', {
          requeueAfterMs: 30,
        });
      return {};
    });
    c.start();
    queue.add('k');
    await eventually(() => at.length === 4 && !queue.isProcessing('k'), 'the fourth run');
    await c.stop();
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    assert.ok(
      gaps.every((g) => g >= 25),
      `gaps ${gaps.join(',')} are the asked-for 30 ms`,
    );
    assert.equal(queue.retries('k'), 0);
    assert.deepEqual(warnings(), []);
    assert.equal(await counter(metrics, 'requeue_after'), 3);
    assert.equal(await counter(metrics, 'error'), 0);
  });

  test('a stalled error is not retried: the key waits for a change to its object', async () => {
    let runs = 0;
    const { c, queue, metrics, warnings } = controller(async () => {
      runs++;
      throw new OperatorError('SPEC_INVALID', 'spec.url: not a URL');
    });
    c.start();
    queue.add('k');
    await eventually(() => runs === 1 && !queue.isProcessing('k'), 'the first run');
    await sleep(100);
    assert.equal(runs, 1, 'no retry, however long');
    assert.equal(await counter(metrics, 'stalled'), 1);
    assert.deepEqual(warnings(), []);
    queue.add('k');
    await eventually(() => runs === 2, 'the run after the object changed');
    await c.stop();
  });

  test('a stalled error is looked at again after stalledRecheckMs when one is set', async () => {
    let runs = 0;
    const { c, queue } = controller(
      async () => {
        runs++;
        throw new OperatorError('CREDENTIALS_NOT_FOUND', 'secret ns/upstream does not exist');
      },
      { stalledRecheckMs: 30 },
    );
    c.start();
    queue.add('k');
    await eventually(() => runs >= 3, 'two rechecks');
    await c.stop();
    assert.equal(queue.retries('k'), 0);
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
