import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * Reading an upstream's "slow down": `429` or `503` with `Retry-After`, and GitHub's primary
 * rate limit (`x-ratelimit-remaining: 0` with `x-ratelimit-reset`), which it also sends as a
 * `403`. Pure: the caller passes the answer and the time.
 */

/** Status and headers of one upstream answer; header names in lower case. */
export interface UpstreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

export interface Throttle {
  status: number;
  /** How long to leave the host alone. */
  waitMs: number;
  /** Where the wait came from: the answer's own header, or our default for a 429 without one. */
  basis: 'retry-after' | 'rate-limit-reset' | 'default';
}

/** GitHub's advice for a limit that names no wait: "wait at least one minute". */
export const DEFAULT_THROTTLE_WAIT_MS = 60_000;
/** Bounds on any wait an upstream asks for: a typo or a hostile header cannot stop us for days. */
export const MIN_THROTTLE_WAIT_MS = 1_000;
export const MAX_THROTTLE_WAIT_MS = 60 * 60_000;

/** Whether the answer asks us to slow down, and for how long. A 503 without a wait is an outage, not a throttle. */
export function throttleOf(answer: UpstreamAnswer, now: number): Throttle | undefined {
  const { status } = answer;
  if (status !== 429 && status !== 503 && status !== 403) return undefined;
  const retryAfter = parseRetryAfter(header(answer, 'retry-after'), now);
  if (retryAfter !== undefined) return { status, waitMs: clamp(retryAfter), basis: 'retry-after' };
  const reset = rateLimitResetMs(answer, now);
  if (reset !== undefined && status !== 503)
    return { status, waitMs: clamp(reset), basis: 'rate-limit-reset' };
  if (status === 429) return { status, waitMs: DEFAULT_THROTTLE_WAIT_MS, basis: 'default' };
  return undefined;
}

/** Milliseconds from `now` a Retry-After value names: delay-seconds or an HTTP-date. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1000;
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (epoch seconds): the wait until the reset. */
function rateLimitResetMs(answer: UpstreamAnswer, now: number): number | undefined {
  if (header(answer, 'x-ratelimit-remaining')?.trim() !== '0') return undefined;
  const reset = header(answer, 'x-ratelimit-reset')?.trim();
  if (!reset || !/^\d{1,12}$/.test(reset)) return undefined;
  return Math.max(0, Number(reset) * 1000 - now);
}

function header(answer: UpstreamAnswer, name: string): string | undefined {
  const value = answer.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function clamp(ms: number): number {
  return Math.min(MAX_THROTTLE_WAIT_MS, Math.max(MIN_THROTTLE_WAIT_MS, ms));
}

/** The header names `throttleOf` reads: all a trace of git's requests needs to keep. */
export const THROTTLE_HEADERS: ReadonlySet<string> = new Set([
  'retry-after',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
]);

/** The error for work upstream refused with a throttle: says how long to wait, and carries the throttle. */
export function throttledError(what: string, host: string, throttle: Throttle): GitMirrorError {
  return new GitMirrorError(
    'UPSTREAM_THROTTLED',
    `${what}: ${host} answered ${throttle.status} and asks us to wait ${Math.ceil(throttle.waitMs / 1000)} s`,
    { retryAfterMs: throttle.waitMs, cause: throttle },
  );
}

/** The throttle an UPSTREAM_THROTTLED error carries, if it is one. */
export function throttleOfError(err: unknown): Throttle | undefined {
  if (!isGitMirrorError(err, 'UPSTREAM_THROTTLED')) return undefined;
  const cause = err.cause as Partial<Throttle> | undefined;
  return typeof cause?.waitMs === 'number' && typeof cause.status === 'number'
    ? (cause as Throttle)
    : undefined;
}
