/** What the eviction policy needs to know about one cache entry. */
export interface EvictionCandidate {
  key: string;
  bytes: number;
  lastUsedAt: number;
  /** When its generation completed; undefined while it runs. */
  completedAt?: number;
  /** Clients reading it right now; an entry being read is never deleted under them. */
  readers: number;
}

/** Completed entries older than the TTL: they are no longer served, read or not. */
export function expiredKeys(entries: readonly EvictionCandidate[], now: number, ttlMs: number): string[] {
  return entries.filter((e) => e.completedAt !== undefined && now - e.completedAt >= ttlMs).map((e) => e.key);
}

/**
 * Least-recently-used first, among completed entries nobody is reading, until `heldBytes`
 * is at most `targetBytes`. Entries being generated or read are skipped: deleting them would
 * fail a client or waste a generation in progress, and their bytes are freed when they end.
 */
export function chooseEvictions(
  entries: readonly EvictionCandidate[],
  options: { heldBytes: number; targetBytes: number },
): string[] {
  let held = options.heldBytes;
  const chosen: string[] = [];
  const idle = entries
    .filter((e) => e.completedAt !== undefined && e.readers === 0)
    .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
  for (const entry of idle) {
    if (held <= options.targetBytes) break;
    chosen.push(entry.key);
    held -= entry.bytes;
  }
  return chosen;
}
