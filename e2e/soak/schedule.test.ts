import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAULT_KINDS, planChaos, WINDOW_MS } from './schedule.ts';

describe('the chaos schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    const a = planChaos({ seed: 7, runMs: 60 * 60_000 });
    assert.deepEqual(planChaos({ seed: 7, runMs: 60 * 60_000 }), a);
    assert.notDeepEqual(planChaos({ seed: 8, runMs: 60 * 60_000 }).faults, a.faults);
  });

  it('injects every kind of fault once in a short run and three times in an hour', () => {
    for (const [minutes, times] of [
      [5, 1],
      [60, 3],
    ] as const) {
      const plan = planChaos({ seed: 1, runMs: minutes * 60_000 });
      for (const kind of FAULT_KINDS)
        assert.equal(plan.faults.filter((f) => f.kind === kind).length, times, `${kind} in ${minutes} min`);
    }
  });

  it('keeps a quiet start and tail, and never overlaps the two upstream faults', () => {
    for (let seed = 0; seed < 200; seed++) {
      const runMs = (4 + (seed % 57)) * 60_000;
      const plan = planChaos({ seed, runMs });
      for (const f of plan.faults) {
        assert.ok(f.atMs >= plan.chaosStartMs, `seed ${seed}: ${f.kind} before the chaos window`);
        assert.ok(f.atMs + f.durationMs <= plan.chaosEndMs, `seed ${seed}: ${f.kind} runs past the window`);
      }
      assert.ok(plan.chaosEndMs <= runMs - 60_000, 'a tail of at least a minute');
      const upstream = plan.faults.filter((f) => f.kind === 'upstream-down' || f.kind === 'upstream-429');
      for (const a of upstream)
        for (const b of upstream)
          if (a !== b && a.atMs <= b.atMs)
            assert.ok(a.atMs + WINDOW_MS < b.atMs, `seed ${seed}: upstream faults overlap at ${b.atMs}`);
    }
  });

  it('refuses a run too short to hold the schedule', () => {
    assert.throws(() => planChaos({ seed: 1, runMs: 3 * 60_000 }), /too short/);
  });
});
