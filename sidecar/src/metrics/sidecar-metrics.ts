import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { BudgetMetrics } from './budget-metrics.ts';

const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const MIRROR_STATES = ['empty', 'restoring', 'cloning', 'ready', 'failed'] as const;

/**
 * Every Prometheus series the sidecar exports. Labels stay low-cardinality and
 * credential-free: routes and outcomes, never URLs with user info or header values.
 */
export class SidecarMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'outcome'>;
  readonly bytesServed: Counter<'route' | 'source'>;
  readonly uploadPackDuration: Histogram<'source'>;
  readonly gitOperationDuration: Histogram<'operation' | 'outcome'>;
  readonly gitOperations: Counter<'operation' | 'outcome'>;
  readonly mirrorState: Gauge<'state'>;
  readonly mirrorStaleness: Gauge<'mirror'>;
  readonly queueDepth: Gauge;
  readonly activeJobs: Gauge;
  readonly upstreamShared: Counter<'role'>;
  readonly onDemandRefused: Counter<'reason'>;
  readonly onDemandMirrors: Gauge;
  readonly restores: Counter<'outcome'>;
  readonly snapshots: Counter<'outcome'>;
  readonly snapshotBytes: Counter<'direction'>;
  readonly githubTokenMints: Counter<'outcome'>;
  readonly packCacheRequests: Counter<'result'>;
  readonly packCacheBypasses: Counter<'reason'>;
  readonly packCacheGenerations: Counter<'outcome'>;
  readonly packCacheServedBytes: Counter<'role'>;
  readonly packCacheEvictions: Counter<'reason'>;
  readonly packCacheBytes: Gauge;
  readonly packCacheBudget: Gauge;
  readonly packCacheEntries: Gauge;
  readonly fleetWriterRequests: Counter<'kind' | 'outcome'>;
  readonly fleetNotifications: Counter<'outcome'>;
  readonly budget: BudgetMetrics;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });

  constructor() {
    const r = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'gitmirror_' });
    this.requests = new Counter({
      name: 'gitmirror_http_requests_total',
      help: 'Git HTTP requests by route and outcome',
      labelNames: ['route', 'outcome'],
      registers: r,
    });
    this.bytesServed = new Counter({
      name: 'gitmirror_http_response_bytes_total',
      help: 'Bytes sent to git clients',
      labelNames: ['route', 'source'],
      registers: r,
    });
    this.uploadPackDuration = new Histogram({
      name: 'gitmirror_upload_pack_duration_seconds',
      help: 'Duration of upload-pack requests',
      labelNames: ['source'],
      buckets: DURATION_BUCKETS,
      registers: r,
    });
    this.gitOperationDuration = new Histogram({
      name: 'gitmirror_git_operation_duration_seconds',
      help: 'Duration of clone, fetch, repack, restore and snapshot jobs',
      labelNames: ['operation', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers: r,
    });
    this.gitOperations = new Counter({
      name: 'gitmirror_git_operations_total',
      help: 'Clone, fetch, repack, restore and snapshot jobs by outcome',
      labelNames: ['operation', 'outcome'],
      registers: r,
    });
    this.mirrorState = new Gauge({
      name: 'gitmirror_mirrors',
      help: 'Mirrors by state',
      labelNames: ['state'],
      registers: r,
    });
    this.mirrorStaleness = new Gauge({
      name: 'gitmirror_mirror_staleness_seconds',
      help: 'Seconds since the last successful fetch of each mirror',
      labelNames: ['mirror'],
      registers: r,
    });
    this.queueDepth = new Gauge({
      name: 'gitmirror_scheduler_queue_depth',
      help: 'Jobs waiting to run',
      registers: r,
    });
    this.activeJobs = new Gauge({
      name: 'gitmirror_scheduler_active_jobs',
      help: 'Jobs running',
      registers: r,
    });
    this.upstreamShared = new Counter({
      name: 'gitmirror_cold_requests_total',
      help: 'Cold-mirror upload-pack requests by role: leader (went upstream) or follower (shared its response)',
      labelNames: ['role'],
      registers: r,
    });
    this.onDemandRefused = new Counter({
      name: 'gitmirror_on_demand_refused_total',
      help: 'Requests for a repository without a mirror that created none (proxied uncached), by reason: upstream, disabled, limit, backoff',
      labelNames: ['reason'],
      registers: r,
    });
    for (const reason of ['upstream', 'disabled', 'limit', 'backoff'])
      this.onDemandRefused.inc({ reason }, 0);
    this.onDemandMirrors = new Gauge({
      name: 'gitmirror_on_demand_mirrors',
      help: 'Mirrors counting against GITMIRROR_MAX_ON_DEMAND_MIRRORS (created on demand or found on disk)',
      registers: r,
    });
    this.restores = new Counter({
      name: 'gitmirror_restores_total',
      help: 'Mirror warm-ups by outcome: snapshot, clone_fallback, clone, failed',
      labelNames: ['outcome'],
      registers: r,
    });
    this.snapshots = new Counter({
      name: 'gitmirror_snapshots_total',
      help: 'Snapshot jobs by outcome: published, unchanged, failed',
      labelNames: ['outcome'],
      registers: r,
    });
    this.snapshotBytes = new Counter({
      name: 'gitmirror_snapshot_bytes_total',
      help: 'Snapshot bytes uploaded or downloaded',
      labelNames: ['direction'],
      registers: r,
    });
    this.githubTokenMints = new Counter({
      name: 'gitmirror_github_token_mints_total',
      help: 'GitHub App installation tokens requested (standalone, GITMIRROR_GITHUB_APP_FILE), by outcome: success or the error code',
      labelNames: ['outcome'],
      registers: r,
    });
    this.packCacheRequests = new Counter({
      name: 'gitmirror_pack_cache_requests_total',
      help: 'pack-objects runs asked of the pack cache, by result: hit (served from disk), miss (generated), joined (shared a generation in progress), bypass (ran its own pack-objects)',
      labelNames: ['result'],
      registers: r,
    });
    this.packCacheBypasses = new Counter({
      name: 'gitmirror_pack_cache_bypasses_total',
      help: 'Requests that ran their own pack-objects, by reason: budget (cache full), unsupported (an argument or input the cache does not take), unavailable (no entry could be created), no_sideband (a client that does not read side-band-64k)',
      labelNames: ['reason'],
      registers: r,
    });
    this.packCacheGenerations = new Counter({
      name: 'gitmirror_pack_cache_generations_total',
      help: 'pack-objects generations the pack cache ran, by outcome: success, failed, abandoned (no reader left)',
      labelNames: ['outcome'],
      registers: r,
    });
    this.packCacheServedBytes = new Counter({
      name: 'gitmirror_pack_cache_served_bytes_total',
      help: 'Pack bytes sent through the pack cache, by role: hit and joined (no pack-objects ran for them), miss (the request that started the generation)',
      labelNames: ['role'],
      registers: r,
    });
    this.packCacheEvictions = new Counter({
      name: 'gitmirror_pack_cache_evictions_total',
      help: 'Pack cache entries removed, by reason: ttl, budget, mirror_removed',
      labelNames: ['reason'],
      registers: r,
    });
    this.packCacheBytes = new Gauge({
      name: 'gitmirror_pack_cache_bytes',
      help: 'Bytes the pack cache holds on disk, generations in progress and packs still being read included',
      registers: r,
    });
    this.packCacheBudget = new Gauge({
      name: 'gitmirror_pack_cache_budget_bytes',
      help: 'The pack cache budget in effect (GITMIRROR_PACK_CACHE_MAX_BYTES or its default); 0: off',
      registers: r,
    });
    this.packCacheEntries = new Gauge({
      name: 'gitmirror_pack_cache_entries',
      help: 'Completed packs the pack cache can serve',
      registers: r,
    });
    this.fleetWriterRequests = new Counter({
      name: 'gitmirror_fleet_writer_requests_total',
      help: "A follower's fetches and ref checks asked of its fleet's snapshot writer instead of upstream, by kind (fetch, ref_check) and outcome: ok, or failed (then upstream was asked)",
      labelNames: ['kind', 'outcome'],
      registers: r,
    });
    this.fleetNotifications = new Counter({
      name: 'gitmirror_fleet_notifications_total',
      help: "The snapshot writer's word to its followers that refs moved (a fetch for each), by outcome: sent, failed",
      labelNames: ['outcome'],
      registers: r,
    });
    for (const kind of ['fetch', 'ref_check'])
      for (const outcome of ['ok', 'failed']) this.fleetWriterRequests.inc({ kind, outcome }, 0);
    for (const outcome of ['sent', 'failed']) this.fleetNotifications.inc({ outcome }, 0);
    for (const result of ['hit', 'miss', 'joined', 'bypass']) this.packCacheRequests.inc({ result }, 0);
    for (const reason of ['budget', 'unsupported', 'unavailable', 'no_sideband'])
      this.packCacheBypasses.inc({ reason }, 0);
    for (const outcome of ['success', 'failed', 'abandoned']) this.packCacheGenerations.inc({ outcome }, 0);
    for (const role of ['hit', 'miss', 'joined']) this.packCacheServedBytes.inc({ role }, 0);
    for (const reason of ['ttl', 'budget', 'mirror_removed']) this.packCacheEvictions.inc({ reason }, 0);
    this.budget = new BudgetMetrics(r);
    this.loopDelay.enable();
    const loopDelay = this.loopDelay;
    new Gauge({
      name: 'gitmirror_event_loop_delay_p99_seconds',
      help: 'p99 event-loop delay since the previous scrape',
      registers: r,
      collect() {
        this.set(loopDelay.percentile(99) / 1e9);
        loopDelay.reset();
      },
    });
  }

  setMirrorStates(states: Iterable<string>): void {
    const counts = new Map<string, number>(MIRROR_STATES.map((s) => [s, 0]));
    for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
    for (const [state, n] of counts) this.mirrorState.set({ state }, n);
  }
}
