import { Counter, Gauge, type Registry } from 'prom-client';
import type { StorageStatus, UpstreamHostStatus } from '../../../core/admin-api.ts';

/** What one scrape reports of a mirror's place on disk. */
export interface MirrorDiskSample {
  id: string;
  bytes?: number;
  /** Bytes missing while its warm-up is refused for lack of space; 0 otherwise. */
  missingBytes: number;
}

/**
 * The disk budget and the upstream budgets as Prometheus metrics. Counters move as things
 * happen; gauges are set from the budget's and the gates' status at each scrape.
 */
export class BudgetMetrics {
  readonly evictions: Counter<'holder' | 'tier'>;
  readonly evictedBytes: Counter<'holder' | 'tier'>;
  readonly refusals: Counter;
  readonly throttled: Counter<'host' | 'status'>;
  readonly clientRefusals: Counter;
  private readonly limit: Gauge;
  private readonly used: Gauge<'holder'>;
  private readonly reserved: Gauge;
  private readonly mirrorBytes: Gauge<'mirror'>;
  private readonly shortfall: Gauge<'mirror'>;
  private readonly backoff: Gauge<'host'>;
  private readonly upstreamWork: Gauge<'host' | 'work' | 'state'>;

  constructor(registers: Registry[]) {
    const gauge = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
      new Gauge<L>({ name, help, labelNames, registers });
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
      new Counter<L>({ name, help, labelNames, registers });
    this.limit = gauge('gitmirror_data_budget_bytes', 'GITMIRROR_DATA_BUDGET (absent when none is set)');
    this.used = gauge(
      'gitmirror_data_used_bytes',
      'Bytes on the data volume by holder (mirrors, spool, caches)',
      ['holder'],
    );
    this.reserved = gauge(
      'gitmirror_data_reserved_bytes',
      'Bytes set aside for writes under way (restores, clones, fetches, repacks)',
    );
    this.mirrorBytes = gauge(
      'gitmirror_mirror_disk_bytes',
      'Bytes one mirror takes on disk, as last measured',
      ['mirror'],
    );
    this.shortfall = gauge(
      'gitmirror_mirror_storage_shortfall_bytes',
      'Bytes missing to hold a mirror whose warm-up was refused for lack of space (0 when it fits)',
      ['mirror'],
    );
    this.evictions = counter(
      'gitmirror_storage_evictions_total',
      'Entries evicted to make room, by holder and tier',
      ['holder', 'tier'],
    );
    this.evictedBytes = counter('gitmirror_storage_evicted_bytes_total', 'Bytes evicted to make room', [
      'holder',
      'tier',
    ]);
    this.refusals = counter(
      'gitmirror_storage_refusals_total',
      'Writes refused (INSUFFICIENT_STORAGE) because they would not fit even after eviction',
    );
    this.throttled = counter(
      'gitmirror_upstream_throttled_total',
      'Upstream answers asking us to slow down (429, 503 or 403 with Retry-After or a spent rate limit)',
      ['host', 'status'],
    );
    this.backoff = gauge(
      'gitmirror_upstream_backoff_seconds',
      'Seconds left before an upstream host that asked us to wait is asked again (0 when it may be)',
      ['host'],
    );
    this.upstreamWork = gauge(
      'gitmirror_upstream_operations',
      'Upstream git operations per host by kind (transfer, ref-check) and state (active, queued)',
      ['host', 'work', 'state'],
    );
    this.clientRefusals = counter(
      'gitmirror_client_requests_refused_total',
      'Git requests answered 429 because their client had GITMIRROR_MAX_CLIENT_REQUESTS in flight',
    );
  }

  /** Sets the gauges from the state at this scrape. */
  observe(state: {
    storage: StorageStatus;
    mirrors: MirrorDiskSample[];
    hosts: UpstreamHostStatus[];
    now: number;
  }) {
    const { storage } = state;
    if (storage.limitBytes !== undefined) this.limit.set(storage.limitBytes);
    for (const holder of storage.holders) this.used.set({ holder: holder.name }, holder.bytes);
    this.reserved.set(storage.reservedBytes);
    this.mirrorBytes.reset();
    this.shortfall.reset();
    for (const mirror of state.mirrors) {
      if (mirror.bytes !== undefined) this.mirrorBytes.set({ mirror: mirror.id }, mirror.bytes);
      this.shortfall.set({ mirror: mirror.id }, mirror.missingBytes);
    }
    for (const host of state.hosts) {
      const until = host.backoffUntil ? Date.parse(host.backoffUntil) : 0;
      this.backoff.set({ host: host.host }, Math.max(0, (until - state.now) / 1000));
      for (const [work, s] of [
        ['transfer', host.transfers],
        ['ref-check', host.refChecks],
      ] as const) {
        this.upstreamWork.set({ host: host.host, work, state: 'active' }, s.active);
        this.upstreamWork.set({ host: host.host, work, state: 'queued' }, s.queued);
      }
    }
  }
}
