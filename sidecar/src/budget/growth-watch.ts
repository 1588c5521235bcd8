import { isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { Reservation } from './disk-budget.ts';

export interface GrowthWatchOptions {
  reservation: Reservation;
  /** Bytes the write has put on disk so far (e.g. `treeBytes` of its temp dir, less what was there before). */
  measure: () => Promise<number>;
  /** Called once, with the INSUFFICIENT_STORAGE error, when the write outgrew what the budget can give. */
  onExhausted: (err: Error) => void;
  /** How often to measure; 250 ms by default. */
  intervalMs?: number;
  /**
   * How far ahead of the measured size the reservation is kept, so the write has room until
   * the next measurement: a quarter of what it wrote so far, at least 16 MiB by default. Near
   * the end of the budget a quarter of this minimum is enough to go on.
   */
  minAheadBytes?: number;
}

export interface GrowthWatch {
  /** Stops watching; resolves with the last measurement, taken now. */
  stop(): Promise<number>;
}

/**
 * Follows a write whose size nobody knew in advance (a clone, a fetch, an extraction from an
 * old manifest): measures it every interval, records the progress on its reservation and
 * grows the reservation ahead of it; when the budget cannot give more, even after evicting,
 * it reports the shortfall so the caller aborts the write before it passes the budget.
 */
export function watchGrowth(options: GrowthWatchOptions): GrowthWatch {
  const { reservation } = options;
  const intervalMs = options.intervalMs ?? 250;
  const minAhead = options.minAheadBytes ?? 16 * 1024 * 1024;
  let stopped = false;
  let exhausted = false;
  let last = 0;
  let tick: Promise<void> = Promise.resolve();

  const check = async () => {
    const written = await options.measure().catch(() => last);
    last = written;
    reservation.wrote(written);
    const ahead = Math.max(minAhead, Math.ceil(written / 4));
    if (stopped || exhausted || written + ahead / 2 <= reservation.bytes) return;
    try {
      // A full step ahead only from free space; near the end a small step, evicting if need be.
      await reservation.grow(written + ahead, { evict: false }).catch((err: unknown) => {
        if (!isGitMirrorError(err, 'INSUFFICIENT_STORAGE')) throw err;
        return reservation.grow(written + Math.ceil(minAhead / 4));
      });
    } catch (err) {
      if (!isGitMirrorError(err, 'INSUFFICIENT_STORAGE') || stopped) throw err;
      exhausted = true;
      options.onExhausted(err);
    }
  };
  const timer = setInterval(() => {
    tick = tick.then(check).catch(() => {});
  }, intervalMs);
  timer.unref();

  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await tick;
      last = await options.measure().catch(() => last);
      reservation.wrote(last);
      return last;
    },
  };
}
