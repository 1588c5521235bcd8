import type { Clock } from '../../../core/clock.ts';
import { remember } from './recent.ts';

/** How long a client request waits to start another warm-up after `failures` failed ones: 5 s, doubling, up to 5 min. */
export function warmupRetryDelayMs(failures: number): number {
  return failures === 0 ? 0 : Math.min(300_000, 5_000 * 2 ** (failures - 1));
}

/**
 * Failed warm-ups per repository, so that client requests wait before starting another: a
 * repository that upstream does not let us clone must not be cloned again on every request.
 * It outlives the mirror, because an on-demand mirror whose warm-up failed is forgotten and a
 * request would otherwise create it again at once. Admin restores are explicit and do not ask.
 */
export class WarmupBackoff {
  readonly #clock: Clock;
  readonly #failures = new Map<string, { count: number; at: number }>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Whether a client request may start a warm-up of `id` now. */
  allows(id: string): boolean {
    const failed = this.#failures.get(id);
    return !failed || this.#clock.now() - failed.at >= warmupRetryDelayMs(failed.count);
  }

  failed(id: string): void {
    const count = (this.#failures.get(id)?.count ?? 0) + 1;
    remember(this.#failures, id, { count, at: this.#clock.now() });
  }

  /** A warm-up succeeded, or the mirror was removed: start from scratch. */
  forget(id: string): void {
    this.#failures.delete(id);
  }
}
