import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { Lease } from '../api/kubernetes.ts';
import { describeError, isOperatorError } from '../errors/operator-error.ts';
import type { KubeApi } from '../kube/api.ts';

export interface LeaderElectionOptions {
  api: Pick<KubeApi, 'readLease' | 'createLease' | 'replaceLease'>;
  namespace: string;
  name: string;
  identity: string;
  clock: Clock;
  logger: Logger;
  /** client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry. */
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  /** Called once when a held lease could not be renewed in time; the process should exit. */
  onStoppedLeading: () => void;
}

/**
 * Leader election on a coordination.k8s.io Lease with client-go's rules. A holder's lease is
 * considered expired only after leaseDuration has passed on *our* clock since we last saw the
 * record change, so clock skew between replicas cannot make two leaders. Writes carry the
 * resourceVersion read, so of two candidates racing for one lease exactly one wins.
 */
export class LeaderElector {
  readonly #o: Required<LeaderElectionOptions>;
  readonly #abort = new AbortController();
  #observed: { key: string; at: number } | undefined;
  #leader = false;
  #lease: Lease | undefined;

  constructor(options: LeaderElectionOptions) {
    this.#o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...options };
  }

  isLeader(): boolean {
    return this.#leader;
  }

  /**
   * Campaigns until leading, then renews until stopped or the lease is lost.
   *
   * No attempt may outlast the renew deadline, as in client-go (whose leader-election client
   * times out after it): an API server that holds a request — one starting up queues requests
   * in its flow control for up to a minute, a partition drops them — must not keep a leader
   * that can no longer renew believing it leads, while a standby sees the lease expire and
   * takes over. A leader steps down once the deadline has passed since its last renewal,
   * whether its last attempt failed or is still waiting.
   */
  async run(): Promise<void> {
    while (!this.#stopped() && (await this.#attempt(this.#o.renewDeadlineMs)) !== 'held') await this.#sleep();
    if (this.#stopped()) return;
    this.#leader = true;
    this.#o.logger.info({ lease: this.#o.name, identity: this.#o.identity }, 'became leader');
    this.#o.onStartedLeading();
    let renewedAt = this.#o.clock.now();
    while (!this.#stopped()) {
      await this.#sleep();
      if (this.#stopped()) return;
      const left = renewedAt + this.#o.renewDeadlineMs - this.#o.clock.now();
      const outcome = left > 0 ? await this.#attempt(left) : 'timed out';
      if (this.#stopped()) return;
      if (outcome === 'held') renewedAt = this.#o.clock.now();
      else if (outcome === 'timed out' || this.#o.clock.now() - renewedAt >= this.#o.renewDeadlineMs) {
        this.#leader = false;
        this.#o.logger.error({ lease: this.#o.name, outcome }, 'leader lease lost: could not renew in time');
        this.#o.onStoppedLeading();
        return;
      }
    }
  }

  /** Stops campaigning; a leader hands the lease back so a standby takes over at once. */
  async release(): Promise<void> {
    this.#abort.abort();
    if (!this.#leader || !this.#lease) return;
    this.#leader = false;
    const spec = { ...this.#lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: this.#now() };
    try {
      await this.#o.api.replaceLease(this.#o.namespace, { ...this.#lease, spec });
      this.#o.logger.info({ lease: this.#o.name }, 'released leader lease');
    } catch (err) {
      this.#o.logger.warn({ lease: this.#o.name, err: describeError(err) }, 'could not release leader lease');
    }
  }

  /** One acquire-or-renew, given up after `timeoutMs` (the request may still land later). */
  async #attempt(timeoutMs: number): Promise<'held' | 'not held' | 'timed out'> {
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const timeout = new Promise<'timed out'>((resolve) => {
      timer = setTimeout(() => resolve('timed out'), timeoutMs);
      // release() does not wait for an attempt the API server is holding.
      onAbort = () => resolve('timed out');
      this.#abort.signal.addEventListener('abort', onAbort, { once: true });
    });
    const attempt = this.#tryAcquireOrRenew().then((held): 'held' | 'not held' =>
      held ? 'held' : 'not held',
    );
    try {
      const outcome = await Promise.race([attempt, timeout]);
      if (outcome === 'timed out' && !this.#stopped()) {
        this.#o.logger.warn({ lease: this.#o.name, timeoutMs }, 'leader election attempt timed out');
      }
      return outcome;
    } finally {
      clearTimeout(timer);
      // One listener per attempt, every retry period, for the life of the process: remove it.
      if (onAbort) this.#abort.signal.removeEventListener('abort', onAbort);
    }
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity } = this.#o;
    try {
      const current = await api.readLease(namespace, name);
      if (!current) {
        this.#lease = await api.createLease(namespace, this.#fresh(name));
        return true;
      }
      if (this.#heldByOther(current)) return false;
      this.#lease = await api.replaceLease(namespace, this.#next(current));
      this.#observe(this.#lease);
      return true;
    } catch (err) {
      if (!isOperatorError(err, 'KUBE_CONFLICT') && !isOperatorError(err, 'KUBE_ALREADY_EXISTS')) {
        this.#o.logger.warn(
          { lease: name, identity, err: describeError(err) },
          'leader election attempt failed',
        );
      }
      return false;
    }
  }

  #heldByOther(lease: Lease): boolean {
    const holder = lease.spec.holderIdentity;
    this.#observe(lease);
    if (!holder || holder === this.#o.identity) return false;
    const durationMs = (lease.spec.leaseDurationSeconds ?? 0) * 1000;
    return this.#observed!.at + durationMs > this.#o.clock.now();
  }

  #observe(lease: Lease): void {
    const key = `${lease.spec.holderIdentity}|${lease.spec.renewTime?.toISOString()}|${lease.metadata.resourceVersion}`;
    if (this.#observed?.key !== key) this.#observed = { key, at: this.#o.clock.now() };
  }

  #fresh(name: string): Lease {
    const now = this.#now();
    return {
      metadata: { name, namespace: this.#o.namespace },
      spec: {
        holderIdentity: this.#o.identity,
        leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      },
    };
  }

  #next(current: Lease): Lease {
    const now = this.#now();
    const ours = current.spec.holderIdentity === this.#o.identity;
    const spec = {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
      acquireTime: ours ? current.spec.acquireTime : now,
      renewTime: now,
      leaseTransitions: (current.spec.leaseTransitions ?? 0) + (ours ? 0 : 1),
    };
    return { metadata: current.metadata, spec };
  }

  #now(): Date {
    return new Date(this.#o.clock.now());
  }

  #stopped(): boolean {
    return this.#abort.signal.aborted;
  }

  async #sleep(): Promise<void> {
    await sleep(this.#o.retryPeriodMs, undefined, { signal: this.#abort.signal }).catch(() => {});
  }
}
