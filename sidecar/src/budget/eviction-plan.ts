import { type EvictionCandidate, TIER_ORDER } from './byte-holder.ts';

/** A candidate together with the holder that offered it. */
export interface HeldCandidate extends EvictionCandidate {
  holder: string;
}

export interface EvictionPlan {
  /** What to delete, in order; empty when even all of it would not be enough. */
  evictions: HeldCandidate[];
  /** Bytes the evictions free. */
  freedBytes: number;
  /** Bytes every candidate together could free. */
  evictableBytes: number;
  /** Whether the evictions free at least the bytes asked for. */
  enough: boolean;
}

/**
 * Which entries to delete to free `needBytes`: tier by tier (expired, cache, idle mirrors),
 * least recently used first within a tier, across holders. When everything evictable would
 * still not be enough nothing is chosen: evicting would lose cached data and still fail.
 */
export function planEviction(candidates: readonly HeldCandidate[], needBytes: number): EvictionPlan {
  const ordered = [...candidates].sort(byEvictionOrder);
  const evictableBytes = ordered.reduce((sum, c) => sum + c.bytes, 0);
  if (needBytes <= 0) return { evictions: [], freedBytes: 0, evictableBytes, enough: true };
  if (evictableBytes < needBytes) return { evictions: [], freedBytes: 0, evictableBytes, enough: false };
  const evictions: HeldCandidate[] = [];
  let freedBytes = 0;
  for (const candidate of ordered) {
    if (freedBytes >= needBytes) break;
    evictions.push(candidate);
    freedBytes += candidate.bytes;
  }
  return { evictions, freedBytes, evictableBytes, enough: true };
}

function byEvictionOrder(a: HeldCandidate, b: HeldCandidate): number {
  return (
    TIER_ORDER.indexOf(a.tier) - TIER_ORDER.indexOf(b.tier) ||
    a.lastUsedAt - b.lastUsedAt ||
    // Equally old: the bigger one first, so fewer entries go.
    b.bytes - a.bytes ||
    (a.holder < b.holder ? -1 : a.holder > b.holder ? 1 : 0) ||
    (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
  );
}
