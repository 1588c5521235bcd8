import type { Logger } from '../log/logger.ts';

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
    options: { runSoon?: boolean } = {},
  ) {
    const key = `${owner}\0${name}`;
    const arm = (delay: number) => {
      const timer = setTimeout(async () => {
        try {
          await task();
        } catch (err) {
          this.logger.debug({ owner, task: name, err: String(err) }, 'periodic task failed');
        }
        if (this.timers.get(key) === timer) arm(jittered(intervalMs));
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

/** ±10% around the interval. */
function jittered(intervalMs: number): number {
  return Math.max(1_000, intervalMs * (0.9 + Math.random() * 0.2));
}
