import type { ByteHolder, EvictedEntry, EvictionCandidate } from './byte-holder.ts';
import { treeBytes } from './tree-usage.ts';

/**
 * A directory on the data volume that nothing here may evict (a file snapshot store kept under
 * the data dir), counted as measured at its last `refresh`.
 */
export class MeasuredTree implements ByteHolder {
  readonly name: string;
  private readonly dir: string;
  private bytes = 0;

  constructor(name: string, dir: string) {
    this.name = name;
    this.dir = dir;
  }

  async refresh(): Promise<void> {
    this.bytes = await treeBytes(this.dir);
  }

  bytesHeld(): number {
    return this.bytes;
  }

  evictionCandidates(): EvictionCandidate[] {
    return [];
  }

  async evict(): Promise<EvictedEntry[]> {
    return [];
  }
}
