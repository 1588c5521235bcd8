import type { ByteHolder, EvictedEntry, EvictionCandidate } from './byte-holder.ts';

/** What the mirror holder needs to know of one mirror; the mirror manager provides it. */
export interface HeldMirror {
  id: string;
  /** Bytes on disk as last measured; undefined until the first measurement. */
  bytes: number | undefined;
  /** Named by the operator or GITMIRROR_MIRRORS: never evicted. */
  configured: boolean;
  /** When a client was last served from it locally; for one never served, when it became ready. */
  lastServedAt: number;
  /** Serving a client, warming up or running a job (fetch, repack, snapshot): not evictable now. */
  busy: boolean;
}

export interface MirrorBytesOptions {
  /** The mirrors held now. */
  mirrors: () => Iterable<HeldMirror>;
  /** Removes a mirror for good (its entry and its directory), as `DELETE /v1/mirrors/{id}` does. */
  remove: (id: string) => Promise<void>;
}

/**
 * The mirrors as a byte holder. Each mirror's size is what was measured when it last changed
 * (after its warm-up, fetch or repack), not per request. On-demand mirrors nobody is using
 * are eviction candidates, the one served longest ago first; configured mirrors never are.
 */
export class MirrorBytes implements ByteHolder {
  readonly name = 'mirrors';
  private readonly options: MirrorBytesOptions;

  constructor(options: MirrorBytesOptions) {
    this.options = options;
  }

  bytesHeld(): number {
    let bytes = 0;
    for (const mirror of this.options.mirrors()) bytes += mirror.bytes ?? 0;
    return bytes;
  }

  evictionCandidates(): EvictionCandidate[] {
    const candidates: EvictionCandidate[] = [];
    for (const mirror of this.options.mirrors()) {
      if (mirror.configured || mirror.busy || mirror.bytes === undefined) continue;
      const { id: key, bytes, lastServedAt: lastUsedAt } = mirror;
      candidates.push({ key, bytes, tier: 'idle-mirror', lastUsedAt });
    }
    return candidates;
  }

  async evict(keys: readonly string[]): Promise<EvictedEntry[]> {
    const current = new Map(this.evictionCandidates().map((c) => [c.key, c]));
    const removed: EvictedEntry[] = [];
    for (const key of keys) {
      const candidate = current.get(key);
      if (!candidate) continue;
      await this.options.remove(key);
      removed.push({ key, bytes: candidate.bytes });
    }
    return removed;
  }
}
