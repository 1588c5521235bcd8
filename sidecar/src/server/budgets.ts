import { resolve, sep } from 'node:path';
import type { StorageStatus } from '../../../core/admin-api.ts';
import { formatBytes } from '../../../core/byte-size.ts';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import { DiskBudget, describeShortfall } from '../budget/disk-budget.ts';
import { MeasuredTree } from '../budget/measured-tree.ts';
import type { SidecarConfig } from '../config/sidecar-config.ts';
import { ClientLimiter } from '../http/client-limiter.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import { UpstreamHosts } from '../upstream/host-gate.ts';

/** A file snapshot store under the data dir is re-measured this often (it changes only on publish). */
const STORE_MEASURE_MS = 60_000;

export interface Budgets {
  disk: DiskBudget;
  upstream: UpstreamHosts;
  clients: ClientLimiter;
  storageStatus(): StorageStatus;
  close(): void;
}

/**
 * The sidecar's budgets, wired to its logs and metrics: the data dir's bytes, each upstream
 * host's operations, and each client's requests. Evictions are logged one line each; a throttled
 * host once per backoff (and once when it is asked again); refusals with their numbers.
 */
export async function createBudgets(
  config: SidecarConfig,
  parts: { logger: Logger; metrics: SidecarMetrics; clock: Clock },
): Promise<Budgets> {
  const { logger } = parts;
  const m = parts.metrics.budget;
  const disk = new DiskBudget({
    limitBytes: config.dataBudgetBytes,
    dataDir: config.dataDir,
    observer: {
      evicted: (c, purpose) => {
        m.evictions.inc({ holder: c.holder, tier: c.tier });
        m.evictedBytes.inc({ holder: c.holder, tier: c.tier }, c.bytes);
        logger.info(
          { holder: c.holder, entry: c.key, tier: c.tier, bytes: c.bytes, for: purpose },
          `evicted ${formatBytes(c.bytes)} to make room`,
        );
      },
      refused: (s) => {
        m.refusals.inc();
        logger.warn({ neededBytes: s.neededBytes, missingBytes: s.missingBytes }, describeShortfall(s));
      },
    },
  });
  const store = await measuredStore(config);
  let timer: NodeJS.Timeout | undefined;
  if (store) {
    disk.add(store);
    timer = setInterval(() => void store.refresh().catch(() => {}), STORE_MEASURE_MS);
    timer.unref();
  }
  const upstream = new UpstreamHosts(config.upstream, {
    clock: parts.clock,
    observer: {
      throttled: (host, throttle, { started }) => {
        m.throttled.inc({ host, status: String(throttle.status) });
        if (started)
          logger.warn(
            { host, status: throttle.status, waitSeconds: throttle.waitMs / 1000, basis: throttle.basis },
            'upstream asked us to wait: nothing is asked of it until then; clients are served from the mirrors',
          );
      },
      resumed: (host) => logger.info({ host }, 'upstream backoff over: asking it again'),
    },
  });
  const clients = new ClientLimiter({
    ...config.clientLimit,
    retryAfterSeconds: 5,
    onRefused: () => m.clientRefusals.inc(),
  });
  return {
    disk,
    upstream,
    clients,
    storageStatus: () => {
      const { reservations: _, ...usage } = disk.usage();
      return usage;
    },
    close: () => clearInterval(timer),
  };
}

/** A `file://` snapshot store inside the data dir (the standalone default) takes the same volume. */
async function measuredStore(config: SidecarConfig): Promise<MeasuredTree | undefined> {
  if (!config.snapshotStoreUrl.startsWith('file://')) return undefined;
  const dir = resolve(new URL(config.snapshotStoreUrl).pathname);
  if (!`${dir}${sep}`.startsWith(`${resolve(config.dataDir)}${sep}`)) return undefined;
  const tree = new MeasuredTree('snapshots', dir);
  await tree.refresh();
  return tree;
}
