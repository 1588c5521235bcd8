import type { ByteHolder, EvictionCandidate } from './byte-holder.ts';
import { treeBytes } from './tree-usage.ts';

/** What the mirror holder needs to know of one mirror; the mirror manager provides it. */
export interface HeldMirror {
  id: string;
  dir: string;
  /** Named by the operator or GITMIRROR_MIRRORS: never evicted. */
  configured: boolean;
  /** When a client was last served from it locally; for one never served, when it became ready. */
  lastServedAt: number;
  /** Serving a client, or running a job (fetch, repack, snapshot): not evictable now. */
  busy: boolean;
}

export interface MirrorBytesOptions {
  /** The mirrors held now. */
  mirrors: () => Iterable<HeldMirror>;
  /** Removes a mirror for good (its entry and its directory), as `DELETE /v1/mirrors/{id}` does. */
  remove: (id: string) => Promise<void>;
  measure?: (dir: string) => Promise<number>;
}

/**
 * The mirrors as a byte holder. Each mirror's size is measured when it changes (after its
 * warm-up, fetch or repack: `measure`), not per request; between measurements the last one
 * stands. On-demand mirrors that nobody is using are eviction candidates, the one served
 * longest ago first; configured mirrors never are.
 */
export class MirrorBytes implements ByteHolder {
  readonly name = 'mirrors';
  private readonly options: MirrorBytesOptions;
  private readonly sizes = new Map<string, number>();

  constructor(options: MirrorBytesOptions) {
    this.options = options;
  }

  /** Measures one mirror's directory now; resolves with its bytes. */
  async measure(mirror: Pick<HeldMirror, 'id' | 'dir'>): Promise<number> {
    const bytes = await (this.options.measure ?? treeBytes)(mirror.dir);
    this.sizes.set(mirror.id, bytes);
    return bytes;
  }

  /** The mirror is gone (removed or evicted): its bytes no longer count. */
  forget(id: string): void {
    this.sizes.delete(id);
  }

  /** The last measured size of one mirror. */
  bytesOf(id: string): number | undefined {
    return this.sizes.get(id);
  }

  bytesHeld(): number {
    let bytes = 0;
    for (const size of this.sizes.values()) bytes += size;
    return bytes;
  }

  evictionCandidates(): EvictionCandidate[] {
    const candidates: EvictionCandidate[] = [];
    for (const mirror of this.options.mirrors()) {
      const bytes = this.sizes.get(mirror.id);
      if (mirror.configured || mirror.busy || bytes === undefined) continue;
      candidates.push({ key: mirror.id, bytes, tier: 'idle-mirror', lastUsedAt: mirror.lastServedAt });
    }
    return candidates;
  }

  async evict(keys: readonly string[]): Promise<number> {
    const current = new Map(this.evictionCandidates().map((c) => [c.key, c]));
    let freed = 0;
    for (const key of keys) {
      const candidate = current.get(key);
      if (!candidate) continue;
      await this.options.remove(key);
      this.forget(key);
      freed += candidate.bytes;
    }
    return freed;
  }
}
