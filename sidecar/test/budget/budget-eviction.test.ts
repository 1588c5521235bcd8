import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ByteHolder, EvictedEntry, EvictionCandidate } from '../../src/budget/byte-holder.ts';
import { DiskBudget } from '../../src/budget/disk-budget.ts';
import type { HeldCandidate } from '../../src/budget/eviction-plan.ts';

const MiB = 1024 * 1024;

/** A cache of entries in memory: some may turn busy between the budget's plan and its eviction. */
class FakeCache implements ByteHolder {
  readonly name = 'cache';
  readonly entries = new Map<string, { bytes: number; lastUsedAt: number; busy: boolean }>();
  /** Keys that a client starts reading just as the budget asks for them to go. */
  readonly turnBusyOnEvict = new Set<string>();

  constructor(entries: [string, number, number][]) {
    for (const [key, mib, lastUsedAt] of entries)
      this.entries.set(key, { bytes: mib * MiB, lastUsedAt, busy: false });
  }

  bytesHeld(): number {
    let bytes = 0;
    for (const e of this.entries.values()) bytes += e.bytes;
    return bytes;
  }

  evictionCandidates(): EvictionCandidate[] {
    return [...this.entries]
      .filter(([, e]) => !e.busy)
      .map(([key, e]) => ({ key, bytes: e.bytes, tier: 'cache' as const, lastUsedAt: e.lastUsedAt }));
  }

  async evict(keys: readonly string[]): Promise<EvictedEntry[]> {
    const removed: EvictedEntry[] = [];
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (this.turnBusyOnEvict.has(key) && entry) entry.busy = true;
      if (!entry || entry.busy) continue;
      this.entries.delete(key);
      removed.push({ key, bytes: entry.bytes });
    }
    return removed;
  }
}

function budgetWith(holder: ByteHolder, limitBytes: number) {
  const evicted: HeldCandidate[] = [];
  const budget = new DiskBudget({
    limitBytes,
    dataDir: '/nowhere',
    freeBytes: async () => 1024 * MiB,
    observer: { evicted: (c) => evicted.push(c), refused: () => {} },
  });
  budget.add(holder);
  return { budget, evicted };
}

describe('what the disk budget counts as evicted', () => {
  it('only what a holder removed: an entry it skipped (a client started reading it) is neither counted nor reported, and the budget looks again', async () => {
    const cache = new FakeCache([
      ['old', 10, 1],
      ['middle', 10, 2],
      ['new', 10, 3],
    ]);
    cache.turnBusyOnEvict.add('old');
    const { budget, evicted } = budgetWith(cache, 40 * MiB);
    const reservation = await budget.reserve({ bytes: 25 * MiB, purpose: 'restore of h/o/r' });
    assert.deepEqual(
      evicted.map((e) => e.key),
      ['middle', 'new'],
      'the first plan was old and middle; old stayed, so new went next',
    );
    assert.deepEqual(budget.usage().evicted, [{ holder: 'cache', tier: 'cache', count: 2, bytes: 20 * MiB }]);
    assert.deepEqual([...cache.entries.keys()], ['old']);
    reservation.release();
  });

  it("counts the bytes the holder says it freed, not the plan's", async () => {
    const cache = new FakeCache([['grown', 10, 1]]);
    const evict = cache.evict.bind(cache);
    // The entry grew by 2 MiB between the plan and the eviction.
    cache.evict = async (keys) => (await evict(keys)).map((r) => ({ ...r, bytes: r.bytes + 2 * MiB }));
    const { budget } = budgetWith(cache, 10 * MiB);
    (await budget.reserve({ bytes: 5 * MiB, purpose: 'fetch of h/o/r' })).release();
    assert.deepEqual(budget.usage().evicted, [{ holder: 'cache', tier: 'cache', count: 1, bytes: 12 * MiB }]);
  });

  it('keeps a holder within a bound of its own through the same eviction: least recently used first, counted alike; a holder within it loses nothing', async () => {
    const cache = new FakeCache([
      ['a', 4, 3],
      ['b', 4, 1],
      ['c', 4, 2],
    ]);
    const { budget, evicted } = budgetWith(cache, 1024 * MiB);
    await budget.keepWithin(cache, 12 * MiB);
    assert.equal(evicted.length, 0);
    await budget.keepWithin(cache, 5 * MiB);
    assert.deepEqual(
      evicted.map((e) => e.key),
      ['b', 'c'],
    );
    assert.equal(cache.bytesHeld(), 4 * MiB);
    assert.deepEqual(budget.usage().evicted, [{ holder: 'cache', tier: 'cache', count: 2, bytes: 8 * MiB }]);
    // What cannot go (being read) stays, and the rest still goes.
    cache.entries.get('a')!.busy = true;
    await budget.keepWithin(cache, 0);
    assert.equal(cache.bytesHeld(), 4 * MiB);
  });
});
