import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type HeldCandidate, planEviction } from '../../src/budget/eviction-plan.ts';

const MiB = 1024 * 1024;

function c(
  holder: string,
  key: string,
  tier: HeldCandidate['tier'],
  lastUsedAt: number,
  mib: number,
): HeldCandidate {
  return { holder, key, tier, lastUsedAt, bytes: mib * MiB };
}

describe('planEviction', () => {
  const candidates = [
    c('mirrors', 'github.com/a/served-long-ago', 'idle-mirror', 100, 50),
    c('mirrors', 'github.com/a/served-recently', 'idle-mirror', 900, 50),
    c('pack-cache', 'p1', 'cache', 800, 5),
    c('lfs', 'o1', 'cache', 200, 5),
    c('pack-cache', 'p0', 'expired', 950, 5),
    c('spool', 's0', 'expired', 10, 1),
  ];

  it('takes expired entries first, then cache entries least recently used across holders, then idle mirrors', () => {
    const plan = planEviction(candidates, 116 * MiB);
    assert.ok(plan.enough);
    assert.deepEqual(
      plan.evictions.map((e) => e.key),
      ['s0', 'p0', 'o1', 'p1', 'github.com/a/served-long-ago', 'github.com/a/served-recently'],
    );
  });

  it('stops as soon as enough is freed', () => {
    const plan = planEviction(candidates, 12 * MiB);
    assert.deepEqual(
      plan.evictions.map((e) => e.key),
      ['s0', 'p0', 'o1', 'p1'],
    );
    assert.equal(plan.freedBytes, 16 * MiB);
  });

  it('evicts the mirror served longest ago, not the one fetched longest ago', () => {
    const plan = planEviction(candidates, 60 * MiB);
    assert.ok(plan.evictions.some((e) => e.key === 'github.com/a/served-long-ago'));
    assert.ok(!plan.evictions.some((e) => e.key === 'github.com/a/served-recently'));
  });

  it('evicts nothing when even everything evictable would not be enough', () => {
    const plan = planEviction(candidates, 117 * MiB);
    assert.equal(plan.enough, false);
    assert.deepEqual(plan.evictions, []);
    assert.equal(plan.evictableBytes, 116 * MiB);
  });

  it('needs nothing when nothing is needed', () => {
    assert.deepEqual(planEviction(candidates, 0).evictions, []);
    assert.equal(planEviction([], 0).enough, true);
    assert.equal(planEviction([], 1).enough, false);
  });
});
