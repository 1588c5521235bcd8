import type { OnDemandRefusal, OnDemandStatus } from '../../../core/admin-api.ts';
import type { Logger } from '../../../core/log.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import { warmupRetryDelayMs } from './mirror.ts';

/** Repositories remembered for backoff and log throttling; the oldest are forgotten first. */
const REMEMBERED = 10_000;
/** A refusal is logged at most this often per repository. */
const LOG_EVERY_MS = 5 * 60_000;

/**
 * The rules for mirrors that client requests create: at most `limit` of them, none after
 * a recent failed warm-up of the same repository, and every refusal counted (metric and
 * admin status) and logged at most once per repository every few minutes. Its memory is
 * bounded, so a flood of distinct repository names costs a fixed amount.
 */
export class OnDemandGate {
  readonly limit: number;
  private readonly logger: Logger;
  private readonly metrics: SidecarMetrics;
  private readonly failures = new Map<string, { count: number; at: number }>();
  private readonly lastLogged = new Map<string, number>();
  private readonly refused: Record<OnDemandRefusal, number> = {
    upstream: 0,
    disabled: 0,
    limit: 0,
    backoff: 0,
  };

  constructor(limit: number, logger: Logger, metrics: SidecarMetrics) {
    this.limit = limit;
    this.logger = logger;
    this.metrics = metrics;
  }

  /** Why a new on-demand mirror of `id` may not be created while `count` are held, if it may not. */
  check(id: string, count: number, now = Date.now()): OnDemandRefusal | undefined {
    if (this.limit === 0) return 'disabled';
    const failed = this.failures.get(id);
    if (failed && now - failed.at < warmupRetryDelayMs(failed.count)) return 'backoff';
    if (count >= this.limit) return 'limit';
    return undefined;
  }

  /** Counts a request that created no mirror, and logs it (once per repository per few minutes). */
  refuse(id: string, reason: OnDemandRefusal, count: number, now = Date.now()): void {
    this.refused[reason]++;
    this.metrics.onDemandRefused.inc({ reason });
    if (reason === 'upstream') return; // the ordinary answer to a 401 challenge or a typo
    const last = this.lastLogged.get(id);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    remember(this.lastLogged, id, now);
    const line = { mirror: id, reason, limit: this.limit, count };
    if (reason === 'limit')
      this.logger.warn(
        line,
        'on-demand mirror limit reached: serving this repository from upstream, uncached',
      );
    else
      this.logger.debug(line, 'no mirror created on demand: serving this repository from upstream, uncached');
  }

  /** An on-demand warm-up failed: requests wait (5 s, doubling, up to 5 min) before another. */
  warmupFailed(id: string, now = Date.now()): void {
    remember(this.failures, id, { count: (this.failures.get(id)?.count ?? 0) + 1, at: now });
  }

  warmupSucceeded(id: string): void {
    this.failures.delete(id);
  }

  status(count: number): OnDemandStatus {
    return { limit: this.limit, count, refused: { ...this.refused } };
  }
}

/** Sets `key` as the newest entry, forgetting the oldest beyond REMEMBERED. */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > REMEMBERED) map.delete(map.keys().next().value as string);
}
