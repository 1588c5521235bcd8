/** Exponential backoff with a cap and optional jitter, shared by retries across the operator. */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** 0..1: each delay is drawn from [d*(1-jitter), d]. */
  jitter?: number;
}

/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random) {
  const exp = policy.baseMs * 2 ** Math.min(attempt, 40);
  const capped = Math.min(exp, policy.maxMs);
  const jitter = policy.jitter ?? 0;
  return Math.round(capped * (1 - jitter * random()));
}
