import type { Logger } from '../../../core/log.ts';

/**
 * Per-mirror periodic work with jitter, so a fleet of replicas (or many mirrors in one
 * replica) started together does not fetch in lockstep.
 */
export class PeriodicTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly logger: Logger;

  constructor(logger: Logger) {
    this.logger = logger;
  }

  every(
    owner: string,
    name: string,
    intervalMs: number,
    task: () => Promise<unknown>,
    options: { runSoon?: boolean; retry?: RetryPolicy } = {},
  ) {
    const key = `${owner}\0${name}`;
    let failures = 0;
    const arm = (delay: number) => {
      const timer = setTimeout(async () => {
        let next = jittered(intervalMs);
        try {
          await task();
          failures = 0;
        } catch (err) {
          failures++;
          const retry = options.retry;
          if (retry && failures <= retry.attempts) next = Math.min(next, retry.baseMs * 2 ** (failures - 1));
          else failures = 0;
          this.logger.debug(
            { owner, task: name, err: String(err), retryInMs: Math.round(next) },
            'periodic task failed',
          );
        }
        if (this.timers.get(key) === timer) arm(next);
      }, delay);
      timer.unref();
      this.timers.set(key, timer);
    };
    arm(options.runSoon ? Math.min(intervalMs, 5_000 + Math.random() * 5_000) : jittered(intervalMs));
  }

  clear(owner: string): void {
    for (const [key, timer] of this.timers) {
      if (key.startsWith(`${owner}\0`)) {
        clearTimeout(timer);
        this.timers.delete(key);
      }
    }
  }

  clearAll(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}

/**
 * A failed run is retried sooner than the next interval, with exponential backoff and a
 * bound on attempts; after the last one the task waits for its regular interval again.
 */
export interface RetryPolicy {
  attempts: number;
  baseMs: number;
}

/** ±10% around the interval. */
function jittered(intervalMs: number): number {
  return Math.max(1_000, intervalMs * (0.9 + Math.random() * 0.2));
}
