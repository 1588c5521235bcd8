import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { QueueObserver } from './workqueue.ts';

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The operator's metrics. Controller and work-queue series use controller-runtime's names and
 * labels so existing dashboards work; the operator's own series carry the `gitmirror_` prefix.
 * One registry per instance keeps unit tests independent of each other.
 */
export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Reconciliations per controller and result (success, error, requeue_after, stalled).',
    labelNames: ['controller', 'result'] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Reconciliations that failed, per controller.',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });
  readonly reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Time per reconciliation, per controller.',
    labelNames: ['controller'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly activeWorkers = new Gauge({
    name: 'controller_runtime_active_workers',
    help: 'Workers busy with a reconciliation, per controller.',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'workqueue_depth',
    help: 'Keys waiting in the work queue.',
    labelNames: ['name'] as const,
    registers: [this.registry],
  });
  readonly queueAdds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Keys added to the work queue.',
    labelNames: ['name'] as const,
    registers: [this.registry],
  });
  readonly queueRetries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Rate-limited retries of keys.',
    labelNames: ['name'] as const,
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'Time a key waited in the queue before a worker took it.',
    labelNames: ['name'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'leader_election_master_status',
    help: '1 while this replica holds the leader lease.',
    labelNames: ['name'] as const,
    registers: [this.registry],
  });
  readonly sidecarRequests = new Counter({
    name: 'gitmirror_operator_sidecar_requests_total',
    help: 'Admin API calls to sidecars, per method and result (ok or an error code).',
    labelNames: ['method', 'result'] as const,
    registers: [this.registry],
  });
  readonly warmupSeconds = new Histogram({
    name: 'gitmirror_operator_pod_warmup_seconds',
    help: 'Time from pod start to its warm gate opening, per reason.',
    labelNames: ['reason'] as const,
    buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1200, 3600],
    registers: [this.registry],
  });

  readonly githubTokenMints = new Counter({
    name: 'gitmirror_operator_github_token_mints_total',
    help: 'GitHub App installation tokens requested from GitHub, per outcome (success or an error code).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly githubTokenExpiry = new Gauge({
    name: 'gitmirror_operator_github_token_expiry_timestamp_seconds',
    help: 'When the installation token last minted for an App installation expires (Unix time).',
    labelNames: ['app_id', 'installation_id'] as const,
    registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: 'gitmirror_operator_webhook_deliveries_total',
    help: 'Webhook deliveries received, per provider and outcome (delivered, duplicate, ping, ignored, unsigned, bad_signature, bad_request, too_large, failed).',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
  });

  queueObserver(name: string): QueueObserver {
    return {
      added: () => this.queueAdds.inc({ name }),
      retried: () => this.queueRetries.inc({ name }),
      depth: (n) => this.queueDepth.set({ name }, n),
      waited: (seconds) => this.queueWait.observe({ name }, seconds),
    };
  }
}
