import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestClock } from '../../../testing/test-clock.ts';
import { WarmupBackoff, warmupRetryDelayMs } from '../../src/mirrors/warmup-backoff.ts';

describe('the warm-up retry policy', () => {
  it('waits 5 s after a failed warm-up, doubling per failure, up to 5 minutes', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 6, 7, 20].map(warmupRetryDelayMs),
      [0, 5_000, 10_000, 20_000, 160_000, 300_000, 300_000],
    );
  });

  it('allows a client-started warm-up once the wait after the last failure is over', () => {
    const clock = new TestClock(0);
    const backoff = new WarmupBackoff(clock);
    assert.ok(backoff.allows('h/a'), 'never failed');
    for (const wait of [5_000, 10_000, 20_000]) {
      backoff.failed('h/a');
      clock.advance(wait - 1);
      assert.equal(backoff.allows('h/a'), false, `within ${wait} ms`);
      clock.advance(1);
      assert.ok(backoff.allows('h/a'), `after ${wait} ms`);
    }
    assert.ok(backoff.allows('h/b'), 'per repository');
    backoff.failed('h/a');
    backoff.forget('h/a');
    assert.ok(backoff.allows('h/a'), 'a success or a removal starts from scratch');
  });
});
