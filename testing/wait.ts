import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polling for tests, end-to-end scenarios and benchmarks: they assert on outcomes, never on
 * how long a loaded machine takes to reach them.
 */

export interface WaitOptions {
  /** Give up after this long [30 s]. */
  timeoutMs?: number;
  /** Pause between two checks [50 ms]. */
  intervalMs?: number;
}

/** Thrown by a check when what it waits for can no longer happen (the process exited). */
export class WaitAbandoned extends Error {}

/** Ends a wait at once with `reason`, from inside its check. */
export function abandonWait(reason: string): never {
  throw new WaitAbandoned(reason);
}

/**
 * Resolves with the first value of `check` other than undefined or false. A check that throws
 * is tried again (the server is not up yet), except with `abandonWait`. A timeout names `what`
 * and the last error or value seen, so it says what was still missing.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (err) {
      if (err instanceof WaitAbandoned) throw err;
      last = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(options.intervalMs ?? 50);
  }
  const detail = last instanceof Error ? last.message : JSON.stringify(last);
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
}
