/**
 * Margin on the spacing of ref checks: what upstream counts is when each request arrives, and
 * networks (and a busy server's accept loop, and the clock upstream reads) delay one request
 * more than another. With it upstream sees at most R in any second unless arrivals are skewed
 * by more than this relative to each other; 50 ms was not enough on a loaded 2-core machine.
 */
export const REF_CHECK_MARGIN_MS = 100;

/** How many recent start-to-send delays the estimate of the shortest one looks at. */
const LATENCIES_KEPT = 16;

/**
 * Spaces the requests of successive ref checks, not their starts: starting git takes anywhere
 * from 15 to 90 ms on a busy machine before its request leaves, which alone could put R + 1
 * requests in one second if starts were spaced. So each check reports when its request left
 * (git's HTTP trace says), the next one starts only after that, and early enough, by the
 * shortest start-to-send delay seen lately, that its request leaves one interval after the last.
 */
export class RequestSpacing {
  private readonly intervalMs: number;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  /** The check whose request has not left yet; none may start meanwhile. */
  private pending?: { since: number };
  private readonly latencies: number[] = [];

  constructor(perSecond: number) {
    this.intervalMs = (1000 + REF_CHECK_MARGIN_MS) / perSecond;
  }

  /** When the next check may start: a time, or undefined while the last one's request has not left. */
  nextStartAt(): number | undefined {
    if (this.pending) return undefined;
    const shortest = this.latencies.length > 0 ? Math.min(...this.latencies) : 0;
    return this.lastSentAt + this.intervalMs - shortest;
  }

  /** A check starts; the token it gets names it in `sent` and `ended`. */
  started(now: number): object {
    this.pending = { since: now };
    return this.pending;
  }

  /** The check's request left at `now`. */
  sent(check: object, now: number): void {
    if (this.pending !== check) return;
    this.latencies.push(now - this.pending.since);
    if (this.latencies.length > LATENCIES_KEPT) this.latencies.shift();
    this.lastSentAt = now;
    this.pending = undefined;
  }

  /** The check ended; if it never said its request left, it counts as leaving now. */
  ended(check: object, now: number): void {
    if (this.pending !== check) return;
    this.lastSentAt = now;
    this.pending = undefined;
  }
}
