import { waitFor } from '../../../testing/wait.ts';

/**
 * Waits until `check` holds, polling: tests of timers and workers assert on outcomes, not on
 * how long a loaded CI machine takes to reach them. The fakes answer in microseconds, so the
 * checks are frequent and the wait short.
 */
export async function eventually(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  await waitFor(what, check, { timeoutMs, intervalMs: 5 });
}
