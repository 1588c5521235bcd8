import type { DiskBudget, Reservation } from './disk-budget.ts';
import { watchGrowth } from './growth-watch.ts';

export interface GuardedWriteOptions {
  budget: DiskBudget;
  /** As a person reads it: `clone of github.com/org/repo`. */
  purpose: string;
  /** The estimate reserved before the first byte; refused (INSUFFICIENT_STORAGE) when it cannot fit. */
  bytes: number;
  /** Bytes the write has put on disk so far; with it, the write is watched and may grow past its estimate. */
  measure?: () => Promise<number>;
  /** The caller's own signal (a cancelled job); the write's signal fires with it. */
  signal?: AbortSignal;
  intervalMs?: number;
}

/** A write under way within the budget. */
export interface GuardedWrite {
  /** Fires when the caller's signal does, or when the write outgrew what the budget can give. */
  readonly signal: AbortSignal;
  readonly reservation: Reservation;
  /** Why the write was stopped for lack of space (INSUFFICIENT_STORAGE), if it was: throw this. */
  exhausted(): Error | undefined;
  /** Stops watching and releases the reservation: call once the bytes belong to a holder, or are gone. */
  finish(): Promise<void>;
}

/**
 * Starts a write within the disk budget: reserves its estimate first (refusing before any byte
 * is written), and when it can be measured, follows it and stops it before it passes the budget.
 *
 *   const write = await startGuardedWrite({ budget, purpose, bytes, measure, signal });
 *   try { await work(write.signal) } catch (err) { throw write.exhausted() ?? err } finally { await write.finish() }
 */
export async function startGuardedWrite(options: GuardedWriteOptions): Promise<GuardedWrite> {
  const reservation = await options.budget.reserve({ bytes: options.bytes, purpose: options.purpose });
  const abort = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
  let exhausted: Error | undefined;
  const watch = options.measure
    ? watchGrowth({
        reservation,
        measure: options.measure,
        intervalMs: options.intervalMs,
        onExhausted: (err) => {
          exhausted = err;
          abort.abort(err);
        },
      })
    : undefined;
  return {
    signal,
    reservation,
    exhausted: () => exhausted,
    finish: async () => {
      await watch?.stop();
      reservation.release();
    },
  };
}
