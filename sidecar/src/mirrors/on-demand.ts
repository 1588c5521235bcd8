import type { OnDemandRefusal, OnDemandStatus } from '../../../core/admin-api.ts';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import { remember } from './recent.ts';
import type { WarmupBackoff } from './warmup-backoff.ts';

/** A refusal is logged at most this often per repository. */
const LOG_EVERY_MS = 5 * 60_000;

export interface OnDemandGateOptions {
  /** GITMIRROR_MAX_ON_DEMAND_MIRRORS; 0 turns on-demand mirrors off. */
  limit: number;
  logger: Logger;
  metrics: SidecarMetrics;
  clock: Clock;
  /** The manager's record of failed warm-ups: a repository whose last one failed recently is refused. */
  backoff: WarmupBackoff;
}

/**
 * The rules for mirrors that client requests create: at most `limit` of them, none after
 * a recent failed warm-up of the same repository, and every refusal counted (metric and
 * admin status) and logged at most once per repository every few minutes. Its memory is
 * bounded, so a flood of distinct repository names costs a fixed amount.
 */
export class OnDemandGate {
  readonly limit: number;
  private readonly options: OnDemandGateOptions;
  private readonly lastLogged = new Map<string, number>();
  private readonly refused: Record<OnDemandRefusal, number> = {
    upstream: 0,
    disabled: 0,
    limit: 0,
    backoff: 0,
  };

  constructor(options: OnDemandGateOptions) {
    this.limit = options.limit;
    this.options = options;
  }

  /** Why a new on-demand mirror of `id` may not be created while `count` are held, if it may not. */
  check(id: string, count: number): OnDemandRefusal | undefined {
    if (this.limit === 0) return 'disabled';
    if (!this.options.backoff.allows(id)) return 'backoff';
    if (count >= this.limit) return 'limit';
    return undefined;
  }

  /** Counts a request that created no mirror, and logs it (once per repository per few minutes). */
  refuse(id: string, reason: OnDemandRefusal, count: number): void {
    const { logger, metrics, clock } = this.options;
    this.refused[reason]++;
    metrics.onDemandRefused.inc({ reason });
    if (reason === 'upstream') return; // the ordinary answer to a 401 challenge or a typo
    const now = clock.now();
    const last = this.lastLogged.get(id);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    remember(this.lastLogged, id, now);
    const line = { mirror: id, reason, limit: this.limit, count };
    if (reason === 'limit')
      logger.warn(line, 'on-demand mirror limit reached: serving this repository from upstream, uncached');
    else logger.debug(line, 'no mirror created on demand: serving this repository from upstream, uncached');
  }

  status(count: number): OnDemandStatus {
    return { limit: this.limit, count, refused: { ...this.refused } };
  }
}
