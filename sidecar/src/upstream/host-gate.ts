import type { UpstreamHostStatus } from '../../../core/admin-api.ts';
import { type Clock, systemClock } from '../../../core/clock.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import { FairQueue } from './fair-queue.ts';
import { RequestSpacing } from './request-spacing.ts';
import { type Throttle, throttleOf, throttleOfError, type UpstreamAnswer } from './throttle.ts';

/** A turn at the host: end it when the work is done; a ref check says when its request left. */
export interface Turn {
  /** The work's (first) request has left for upstream: the next ref check is spaced from now. */
  requestSent(): void;
  end(): void;
}

/**
 * What one upstream host is asked for, per sidecar. Transfers (clone, fetch) are heavy on the
 * host: at most `transfers` at once. Ref checks (ls-remote) are light but come from client
 * demand across every mirror: at most `refChecksPerSecond` per second, evenly spaced, and no
 * more in flight than transfers, so a slow host cannot pile them up.
 */
export interface UpstreamLimits {
  transfers: number;
  refChecksPerSecond: number;
}

export type UpstreamWork = 'transfer' | 'ref-check';

export interface GateRequest {
  work: UpstreamWork;
  /** Whose work it is (a mirror id): turns go round these keys, so no mirror starves. */
  key: string;
  signal?: AbortSignal;
}

/** What the gate reports as it works; the sidecar maps it to logs and metrics. */
export interface HostGateObserver {
  /** Upstream asked us to slow down; `started` is true for the first answer of a backoff. */
  throttled(host: string, throttle: Throttle, options: { started: boolean }): void;
  /** The backoff is over: the host is asked again. */
  resumed(host: string): void;
}

interface Waiter {
  key: string;
  grant: (turn: Turn) => void;
  refuse: (err: Error) => void;
}

/**
 * One upstream host's budget in this sidecar: concurrency and rate for its two kinds of work,
 * shared by all mirrors on the host and served in turns by mirror; and its backoff, during
 * which no work is let through at all. Callers that must not wait (a client's request, a ref
 * check a client waits for) look at `backoffRemainingMs` first and serve from the mirror.
 */
export class HostGate {
  readonly host: string;
  private readonly limits: UpstreamLimits;
  private readonly clock: Clock;
  private readonly observer?: HostGateObserver;
  private readonly queues = { transfer: new FairQueue<Waiter>(), 'ref-check': new FairQueue<Waiter>() };
  private readonly active = { transfer: 0, 'ref-check': 0 };
  private readonly spacing: RequestSpacing;
  private backoffUntil = 0;
  private backoffReason?: string;
  private timer?: NodeJS.Timeout;
  private timerAt = 0;

  constructor(
    host: string,
    limits: UpstreamLimits,
    options: { clock?: Clock; observer?: HostGateObserver } = {},
  ) {
    this.host = host;
    this.limits = limits;
    this.clock = options.clock ?? systemClock;
    this.observer = options.observer;
    this.spacing = new RequestSpacing(limits.refChecksPerSecond);
  }

  /** Milliseconds until the host may be asked again; 0 when it may be asked now. */
  backoffRemainingMs(): number {
    return Math.max(0, this.backoffUntil - this.clock.now());
  }

  /**
   * Waits for a turn. While the host is backed off there is none: the request is refused at once
   * with UPSTREAM_THROTTLED and the time left (as are requests waiting when a backoff starts),
   * so no job holds its slot waiting for an upstream that asked to be left alone, and whoever
   * asked serves from the mirror meanwhile. Rejects with ABORTED if `signal` fires first.
   */
  acquire(request: GateRequest): Promise<Turn> {
    const { signal } = request;
    if (signal?.aborted) return Promise.reject(aborted(this.host));
    if (this.backoffRemainingMs() > 0) return Promise.reject(this.backedOff());
    return new Promise((resolve, reject) => {
      const settle = () => signal?.removeEventListener('abort', onAbort);
      const waiter: Waiter = {
        key: request.key,
        grant: (turn) => {
          settle();
          resolve(turn);
        },
        refuse: (err) => {
          settle();
          reject(err);
        },
      };
      const onAbort = () => {
        if (this.queues[request.work].remove(request.key, waiter)) reject(aborted(this.host));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queues[request.work].push(request.key, waiter);
      this.pump();
    });
  }

  /** Throws UPSTREAM_THROTTLED, with the time left, while the host is backed off. */
  assertOpen(): void {
    if (this.backoffRemainingMs() > 0) throw this.backedOff();
  }

  /**
   * Runs `work` in a turn. When it fails because upstream throttled it (UPSTREAM_THROTTLED with
   * a wait), the host is backed off for that long before the error goes on to the caller.
   */
  async run<T>(request: GateRequest, work: (turn: Turn) => Promise<T>): Promise<T> {
    const turn = await this.acquire(request);
    try {
      return await work(turn);
    } catch (err) {
      const throttle = throttleOfError(err);
      if (throttle) this.backoff(throttle);
      throw err;
    } finally {
      turn.end();
    }
  }

  /** An answer from upstream to a request the sidecar made itself (proxied, LFS): backs off if it says so. */
  observe(answer: UpstreamAnswer): Throttle | undefined {
    const throttle = throttleOf(answer, this.clock.now());
    if (throttle) this.backoff(throttle);
    return throttle;
  }

  /** Leaves the host alone for the throttle's wait (a longer backoff under way is kept); refuses whoever waits. */
  backoff(throttle: Throttle): void {
    const now = this.clock.now();
    const started = this.backoffUntil <= now;
    const until = now + throttle.waitMs;
    if (until > this.backoffUntil) {
      this.backoffUntil = until;
      this.backoffReason = describeThrottle(throttle);
    }
    this.observer?.throttled(this.host, throttle, { started });
    for (const queue of Object.values(this.queues))
      for (let waiter = queue.shift(); waiter; waiter = queue.shift()) waiter.refuse(this.backedOff());
    this.pump();
  }

  /** The refusal of work asked for during a backoff; it carries the time left, not a new throttle. */
  private backedOff(): GitMirrorError {
    const remaining = this.backoffRemainingMs();
    return new GitMirrorError(
      'UPSTREAM_THROTTLED',
      `${this.host} asked us to wait (${this.backoffReason}); ${Math.ceil(remaining / 1000)} s left`,
      { retryAfterMs: remaining },
    );
  }

  status(): UpstreamHostStatus {
    const backedOff = this.backoffRemainingMs() > 0;
    return {
      host: this.host,
      backoffUntil: backedOff ? new Date(this.backoffUntil).toISOString() : undefined,
      backoffReason: backedOff ? this.backoffReason : undefined,
      transfers: {
        active: this.active.transfer,
        queued: this.queues.transfer.size,
        limit: this.limits.transfers,
      },
      refChecks: {
        active: this.active['ref-check'],
        queued: this.queues['ref-check'].size,
        perSecond: this.limits.refChecksPerSecond,
      },
    };
  }

  /** Lets through every waiter the limits allow now, and sets a timer for the next one that must wait. */
  private pump(): void {
    const now = this.clock.now();
    if (this.backoffUntil > now) {
      this.wakeAt(this.backoffUntil);
      return;
    }
    if (this.backoffReason !== undefined) {
      this.backoffReason = undefined;
      this.observer?.resumed(this.host);
    }
    while (this.active.transfer < this.limits.transfers && this.queues.transfer.size > 0)
      this.grant('transfer', this.queues.transfer.shift()!);
    const refChecks = this.queues['ref-check'];
    while (this.active['ref-check'] < this.limits.transfers && refChecks.size > 0) {
      const startAt = this.spacing.nextStartAt();
      // Undefined: the last check's request has not left yet; it pumps when it does.
      if (startAt === undefined) return;
      if (startAt > now) {
        this.wakeAt(startAt);
        return;
      }
      this.grant('ref-check', refChecks.shift()!);
    }
  }

  private grant(work: UpstreamWork, waiter: Waiter): void {
    this.active[work]++;
    const check = work === 'ref-check' ? this.spacing.started(this.clock.now()) : undefined;
    let ended = false;
    waiter.grant({
      requestSent: () => {
        if (!check) return;
        this.spacing.sent(check, this.clock.now());
        this.pump();
      },
      end: () => {
        if (ended) return;
        ended = true;
        if (check) this.spacing.ended(check, this.clock.now());
        this.active[work]--;
        this.pump();
      },
    });
  }

  private wakeAt(at: number): void {
    if (this.timer && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pump();
      },
      Math.max(0, at - this.clock.now()),
    );
    this.timer.unref();
  }
}

export function describeThrottle(throttle: Throttle): string {
  const wait = `${Math.round(throttle.waitMs / 1000)} s`;
  const why =
    throttle.basis === 'retry-after'
      ? `Retry-After ${wait}`
      : throttle.basis === 'rate-limit-reset'
        ? `rate limit resets in ${wait}`
        : `no Retry-After, waiting ${wait}`;
  return `${throttle.status}, ${why}`;
}

function aborted(host: string): GitMirrorError {
  return new GitMirrorError('ABORTED', `gave up waiting for a turn at ${host}`);
}

/** The gates of every upstream host this sidecar talks to, created on first use. */
export class UpstreamHosts {
  private readonly limits: UpstreamLimits;
  private readonly options: { clock?: Clock; observer?: HostGateObserver };
  private readonly gates = new Map<string, HostGate>();

  constructor(limits: UpstreamLimits, options: { clock?: Clock; observer?: HostGateObserver } = {}) {
    this.limits = limits;
    this.options = options;
  }

  /** The gate of the host of `url` (or of a bare `host[:port]`). */
  gate(urlOrHost: string): HostGate {
    const host = hostOf(urlOrHost);
    let gate = this.gates.get(host);
    if (!gate) {
      gate = new HostGate(host, this.limits, this.options);
      this.gates.set(host, gate);
    }
    return gate;
  }

  status(): UpstreamHostStatus[] {
    return [...this.gates.values()].map((g) => g.status());
  }
}

function hostOf(urlOrHost: string): string {
  if (!urlOrHost.includes('://')) return urlOrHost.toLowerCase();
  return new URL(urlOrHost).host.toLowerCase();
}
