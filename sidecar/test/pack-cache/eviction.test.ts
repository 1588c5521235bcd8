import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseEvictions, type EvictionCandidate, expiredKeys } from '../../src/pack-cache/eviction.ts';

const entry = (key: string, over: Partial<EvictionCandidate> = {}): EvictionCandidate => ({
  key,
  bytes: 100,
  lastUsedAt: 0,
  completedAt: 0,
  readers: 0,
  ...over,
});

describe('pack cache eviction policy', () => {
  it('evicts the least recently used idle entries until the target is met', () => {
    const entries = [
      entry('new', { lastUsedAt: 30 }),
      entry('old', { lastUsedAt: 10 }),
      entry('mid', { lastUsedAt: 20 }),
    ];
    assert.deepEqual(chooseEvictions(entries, { heldBytes: 300, targetBytes: 150 }), ['old', 'mid']);
    assert.deepEqual(chooseEvictions(entries, { heldBytes: 300, targetBytes: 300 }), []);
    assert.deepEqual(chooseEvictions(entries, { heldBytes: 300, targetBytes: 0 }), ['old', 'mid', 'new']);
  });

  it('never picks an entry being read or still being generated', () => {
    const entries = [
      entry('reading', { lastUsedAt: 1, readers: 2 }),
      entry('generating', { lastUsedAt: 2, completedAt: undefined }),
      entry('idle', { lastUsedAt: 3 }),
    ];
    assert.deepEqual(chooseEvictions(entries, { heldBytes: 300, targetBytes: 0 }), ['idle']);
  });

  it('expires completed entries at the TTL, whether read or not, and never a running generation', () => {
    const entries = [
      entry('fresh', { completedAt: 50 }),
      entry('stale', { completedAt: 0, readers: 1 }),
      entry('edge', { completedAt: 40 }),
      entry('running', { completedAt: undefined }),
    ];
    assert.deepEqual(expiredKeys(entries, 100, 60), ['stale', 'edge']);
  });
});
