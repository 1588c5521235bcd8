import { Counter, Gauge, type Registry } from 'prom-client';

/** Where the bytes of an LFS object came from when it was served or held. */
export type LfsSource = 'local' | 'store' | 'upstream';

export type BatchOutcome =
  /** Every object answered from what the cache holds, upstream not asked. */
  | 'local'
  /** Upstream's batch API was asked (objects the cache lacks, or a Private access check). */
  | 'upstream'
  /** Passed through unchanged: uploads, and repositories the cache does not mirror. */
  | 'passthrough'
  /** Upstream refused the client (401, 403, 404), or a cached refusal was replayed. */
  | 'denied'
  /** A bad request, or upstream failed or could not be reached. */
  | 'error';

/**
 * The `gitmirror_lfs_*` series. Labels are closed sets (sources, outcomes), never oids or
 * repositories, so cardinality stays fixed however many objects pass through.
 */
export class LfsMetrics {
  readonly objectsServed: Counter<'source'>;
  readonly bytesServed: Counter<'source'>;
  readonly batchRequests: Counter<'operation' | 'outcome'>;
  readonly upstreamBytes: Counter;
  readonly verifyFailures: Counter<'source'>;
  readonly storeWrites: Counter<'outcome'>;
  readonly evictedBytes: Counter;
  readonly prefetchObjects: Counter<'outcome'>;

  constructor(registry: Registry, held: { bytes(): number; objects(): number }) {
    const registers = [registry];
    this.objectsServed = new Counter({
      name: 'gitmirror_lfs_objects_served_total',
      help: 'LFS object downloads served, by where the bytes came from: local, store, upstream',
      labelNames: ['source'],
      registers,
    });
    this.bytesServed = new Counter({
      name: 'gitmirror_lfs_bytes_served_total',
      help: 'LFS object bytes sent to clients, by where they came from: local, store, upstream',
      labelNames: ['source'],
      registers,
    });
    this.batchRequests = new Counter({
      name: 'gitmirror_lfs_batch_requests_total',
      help: 'LFS batch API requests by operation and outcome: local, upstream, passthrough, denied, error',
      labelNames: ['operation', 'outcome'],
      registers,
    });
    this.upstreamBytes = new Counter({
      name: 'gitmirror_lfs_upstream_bytes_total',
      help: 'LFS object bytes downloaded from upstream',
      registers,
    });
    this.verifyFailures = new Counter({
      name: 'gitmirror_lfs_verify_failures_total',
      help: 'LFS objects rejected because their sha256 or size did not match, by source: upstream, store',
      labelNames: ['source'],
      registers,
    });
    this.storeWrites = new Counter({
      name: 'gitmirror_lfs_store_writes_total',
      help: 'LFS objects copied to the snapshot store for the fleet, by outcome: ok, failed',
      labelNames: ['outcome'],
      registers,
    });
    this.evictedBytes = new Counter({
      name: 'gitmirror_lfs_evicted_bytes_total',
      help: 'LFS object bytes evicted from the local disk (the store keeps them)',
      registers,
    });
    this.prefetchObjects = new Counter({
      name: 'gitmirror_lfs_prefetch_objects_total',
      help: 'LFS objects looked at by prefetch, by outcome: fetched, held, failed',
      labelNames: ['outcome'],
      registers,
    });
    for (const source of ['local', 'store', 'upstream']) {
      this.objectsServed.inc({ source }, 0);
      this.bytesServed.inc({ source }, 0);
    }
    new Gauge({
      name: 'gitmirror_lfs_local_bytes',
      help: 'Bytes of LFS objects held on the local disk',
      registers,
      collect() {
        this.set(held.bytes());
      },
    });
    new Gauge({
      name: 'gitmirror_lfs_local_objects',
      help: 'LFS objects held on the local disk',
      registers,
      collect() {
        this.set(held.objects());
      },
    });
  }
}
