import { randomBytes } from 'node:crypto';
import { REQUEST_ENV } from './hook-protocol.ts';
import type { PackLease } from './pack-entry.ts';

/**
 * A fetch whose response the sidecar writes itself: the relay registers it before starting
 * upload-pack, the hook of that upload-pack hands its lease over, and upload-pack ends
 * without pack data, which the relay then streams from the cache file.
 */
export class SpliceTicket {
  readonly id = randomBytes(12).toString('base64url');
  private taken?: { lease: PackLease; progress: boolean };
  private readonly onDispose: (ticket: SpliceTicket) => void;

  constructor(onDispose: (ticket: SpliceTicket) => void) {
    this.onDispose = onDispose;
  }

  get env(): Record<string, string> {
    return { [REQUEST_ENV]: this.id };
  }

  /** The lease the hook handed over (with whether its client wants progress), if it did. */
  get handedOver(): { lease: PackLease; progress: boolean } | undefined {
    return this.taken;
  }

  take(lease: PackLease, progress: boolean): boolean {
    if (this.taken) return false;
    this.taken = { lease, progress };
    return true;
  }

  /** Unregisters; a lease handed over but never streamed is released. */
  dispose(): void {
    this.onDispose(this);
  }
}
