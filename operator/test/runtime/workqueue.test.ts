import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BucketRateLimiter, ItemBackoffRateLimiter, WorkQueue } from '../../src/runtime/workqueue.ts';

const noLimit = { when: () => 0, forget: () => {}, retries: () => 0 };

describe('WorkQueue', () => {
  test('a key added several times while queued is handed out once', async () => {
    const q = new WorkQueue(noLimit);
    q.add('a');
    q.add('a');
    q.add('b');
    assert.equal(q.len(), 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    assert.equal(q.len(), 0);
  });

  test('a key added while a worker holds it comes back once, after done()', async () => {
    const q = new WorkQueue(noLimit);
    q.add('a');
    const key = await q.get();
    q.add('a');
    q.add('a');
    assert.equal(q.len(), 0, 'not handed to a second worker while processing');
    q.done(key!);
    assert.equal(q.len(), 1);
    assert.equal(await q.get(), 'a');
    q.done('a');
    assert.equal(q.len(), 0);
  });

  test('get() waits for the next key', async () => {
    const q = new WorkQueue(noLimit);
    const next = q.get();
    q.add('late');
    assert.equal(await next, 'late');
  });

  test('addAfter delays the key; of two delays the earlier wins', async () => {
    const q = new WorkQueue(noLimit);
    q.addAfter('a', 200);
    q.addAfter('a', 20);
    assert.equal(q.len(), 0);
    await sleep(60);
    assert.equal(q.len(), 1);
    assert.equal(await q.get(), 'a');
    q.done('a');
    await sleep(200);
    assert.equal(q.len(), 0, 'the cancelled later delay does not add it again');
    q.shutDown();
  });

  test('addRateLimited backs off per key and forget() resets it', () => {
    const delays: number[] = [];
    const limiter = new ItemBackoffRateLimiter({ baseMs: 100, maxMs: 1_000 });
    for (let i = 0; i < 6; i++) delays.push(limiter.when('k'));
    assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
    assert.equal(limiter.retries('k'), 6);
    assert.equal(limiter.when('other'), 100, 'keys back off independently');
    limiter.forget('k');
    assert.equal(limiter.when('k'), 100);
  });

  test('the token bucket lets a burst through, then spaces keys by its rate', () => {
    let now = 0;
    const bucket = new BucketRateLimiter(10, 2, () => now);
    assert.equal(bucket.when(), 0);
    assert.equal(bucket.when(), 0);
    assert.equal(bucket.when(), 100);
    now += 1_000;
    assert.equal(bucket.when(), 0);
  });

  test('shutDown releases waiting workers and refuses new keys', async () => {
    const q = new WorkQueue(noLimit);
    const waiting = q.get();
    q.shutDown();
    assert.equal(await waiting, undefined);
    q.add('x');
    assert.equal(await q.get(), undefined);
  });

  test('reports adds, depth, waits and retries to its observer', async () => {
    const seen = { added: 0, retried: 0, depth: [] as number[], waited: 0 };
    const q = new WorkQueue(noLimit, {
      added: () => seen.added++,
      retried: () => seen.retried++,
      depth: (n) => seen.depth.push(n),
      waited: () => seen.waited++,
    });
    q.add('a');
    q.add('a');
    await q.get();
    q.done('a');
    q.addRateLimited('a');
    assert.equal(seen.added, 2);
    assert.equal(seen.retried, 1);
    assert.equal(seen.waited, 1);
    assert.deepEqual(seen.depth.slice(0, 2), [1, 0]);
  });
});
