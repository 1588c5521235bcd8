import { type BackoffPolicy, backoffDelay } from './backoff.ts';

/** How long a key waits before its next retry. */
export interface RateLimiter {
  when(key: string): number;
  forget(key: string): void;
  retries(key: string): number;
}

/** Per-key exponential backoff: each failure doubles the key's delay, up to the cap. */
export class ItemBackoffRateLimiter implements RateLimiter {
  readonly #policy: BackoffPolicy;
  readonly #failures = new Map<string, number>();

  constructor(policy: BackoffPolicy) {
    this.#policy = policy;
  }

  when(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    return backoffDelay(this.#policy, failures);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  retries(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/** An overall token bucket, so a burst of failing keys cannot hammer the API server. */
export class BucketRateLimiter implements RateLimiter {
  readonly #qps: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(qps: number, burst: number, now: () => number = Date.now) {
    this.#qps = qps;
    this.#burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#last = now();
  }

  when(): number {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#qps);
    this.#last = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#qps) * 1000);
  }

  forget(): void {}

  retries(): number {
    return 0;
  }
}

export class MaxOfRateLimiter implements RateLimiter {
  readonly #limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    return Math.max(...this.#limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.#limiters) l.forget(key);
  }

  retries(key: string): number {
    return Math.max(...this.#limiters.map((l) => l.retries(key)));
  }
}

/** client-go's default, with a 500 ms base instead of 5 ms: our reconciles make network calls. */
export function defaultRateLimiter(): RateLimiter {
  return new MaxOfRateLimiter(
    new ItemBackoffRateLimiter({ baseMs: 500, maxMs: 5 * 60_000 }),
    new BucketRateLimiter(10, 100),
  );
}

export interface QueueObserver {
  added(): void;
  retried(): void;
  depth(n: number): void;
  /** Seconds a key waited in the queue before a worker took it. */
  waited(seconds: number): void;
}

const NO_OBSERVER: QueueObserver = { added() {}, retried() {}, depth() {}, waited() {} };

/**
 * A de-duplicating work queue with client-go semantics: a key is queued at most once; a key
 * added while a worker holds it is queued again when the worker calls done(), so one key is
 * never processed by two workers at once and no change is lost.
 */
export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #queuedAt = new Map<string, number>();
  readonly #delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #waiters: ((key: string | undefined) => void)[] = [];
  readonly #limiter: RateLimiter;
  readonly #observer: QueueObserver;
  #shuttingDown = false;

  constructor(limiter: RateLimiter = defaultRateLimiter(), observer: QueueObserver = NO_OBSERVER) {
    this.#limiter = limiter;
    this.#observer = observer;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#observer.added();
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    this.#enqueue(key);
  }

  /** Adds the key after `ms`; of several pending delays for one key the earliest wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const pending = this.#delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { at, timer });
  }

  addRateLimited(key: string): void {
    this.#observer.retried();
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Ends the key's backoff: its next failure starts again from the base delay. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  retries(key: string): number {
    return this.#limiter.retries(key);
  }

  /** The next key, waiting for one; undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.#queue.shift();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key)) this.#enqueue(key);
  }

  len(): number {
    return this.#queue.length;
  }

  isProcessing(key: string): boolean {
    return this.#processing.has(key);
  }

  shutDown(): void {
    this.#shuttingDown = true;
    for (const { timer } of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    for (const waiter of this.#waiters.splice(0)) waiter(undefined);
  }

  #enqueue(key: string): void {
    this.#queuedAt.set(key, Date.now());
    const waiter = this.#waiters.shift();
    if (waiter) waiter(this.#take(key));
    else this.#queue.push(key);
    this.#observer.depth(this.#queue.length);
  }

  #take(key: string): string {
    this.#dirty.delete(key);
    this.#processing.add(key);
    this.#observer.waited((Date.now() - (this.#queuedAt.get(key) ?? Date.now())) / 1000);
    this.#queuedAt.delete(key);
    this.#observer.depth(this.#queue.length);
    return key;
  }
}
