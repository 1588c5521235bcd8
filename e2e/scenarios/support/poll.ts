import { waitFor as poll, type WaitOptions } from '../../../testing/wait.ts';

/**
 * testing/wait.ts at a cluster's pace: each check runs kubectl or asks a pod (tenths of a
 * second), and pods take minutes to start, warm and roll.
 */
export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  return poll(what, check, { timeoutMs: 120_000, intervalMs: 500, ...options });
}
