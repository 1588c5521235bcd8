import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Waits until `check` holds, polling: tests of timers and workers assert on outcomes, not on
 * how long a loaded CI machine takes to reach them.
 */
export async function eventually(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await sleep(5);
  assert.ok(check(), `timed out waiting for ${what}`);
}
