/**
 * The seam between the disk budget and everything that keeps bytes on the data volume
 * (mirrors, the spool of cold requests, the pack cache, LFS objects). The budget adds up what
 * each holder says it holds and, when space is needed, asks each what it could give up and
 * in which order; it never looks inside.
 */

/**
 * Why an entry may go, in the order the budget takes them: entries past their expiry first
 * (nobody will be served from them again), then cache entries, then whole mirrors that were
 * made on demand. A mirror the operator or GITMIRROR_MIRRORS configured is never a candidate.
 */
export type EvictionTier = 'expired' | 'cache' | 'idle-mirror';

export const TIER_ORDER: readonly EvictionTier[] = ['expired', 'cache', 'idle-mirror'];

export interface EvictionCandidate {
  /** Names the entry within its holder. */
  key: string;
  /** What deleting it frees on disk. */
  bytes: number;
  tier: EvictionTier;
  /** When a client was last served from it (for a mirror: served, not fetched); oldest goes first. */
  lastUsedAt: number;
}

export interface ByteHolder {
  /** Short and stable, e.g. `mirrors`, `spool`, `pack-cache`, `lfs`: a metric label and a status key. */
  readonly name: string;
  /** Bytes it keeps on the data volume now, entries being written included. */
  bytesHeld(): number;
  /**
   * What it could delete now without failing anyone: nothing being read, written or served.
   * Configured mirrors are never listed.
   */
  evictionCandidates(): readonly EvictionCandidate[];
  /**
   * Deletes these entries (keys from its latest candidates) and resolves with the ones it
   * removed and what each freed. A key that stopped being a candidate meanwhile (a client
   * started reading it) is skipped and not among them: the budget counts only what went.
   */
  evict(keys: readonly string[]): Promise<EvictedEntry[]>;
}

/** An entry a holder deleted, and the bytes that freed. */
export interface EvictedEntry {
  key: string;
  bytes: number;
}
