/**
 * Time as both programs see it: the operator's reconcilers and the sidecar's mirrors take a
 * Clock, so unit tests substitute one they move by hand.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** RFC 3339 with whole seconds, the form Kubernetes writes metav1.Time in. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
