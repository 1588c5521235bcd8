import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FairQueue } from '../../src/upstream/fair-queue.ts';

describe('FairQueue', () => {
  it('serves keys in turn, each key in arrival order', () => {
    const q = new FairQueue<string>();
    for (let i = 0; i < 4; i++) q.push('busy', `busy-${i}`);
    q.push('quiet', 'quiet-0');
    q.push('other', 'other-0');
    q.push('other', 'other-1');
    const order: string[] = [];
    while (q.size > 0) order.push(q.shift()!);
    assert.deepEqual(order, ['busy-0', 'quiet-0', 'other-0', 'busy-1', 'other-1', 'busy-2', 'busy-3']);
    assert.equal(q.shift(), undefined);
  });

  it('takes out an item whose waiter gave up', () => {
    const q = new FairQueue<string>();
    q.push('a', 'a0');
    q.push('b', 'b0');
    q.push('a', 'a1');
    assert.equal(q.remove('b', 'b0'), true);
    assert.equal(q.remove('b', 'b0'), false);
    assert.equal(q.size, 2);
    assert.deepEqual([q.shift(), q.shift()], ['a0', 'a1']);
  });
});
