import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { metricValue } from '../testing/metrics.ts';
import { backgroundLoad, cloneBare } from './clients.ts';
import type { BenchContext } from './context.ts';
import type { BenchSidecar } from './sidecar-process.ts';
import { alternate, median, quote, sh, sleep, timed } from './util.ts';

export interface SnapshotResult {
  cliSeconds: number;
  sidecarSeconds: number;
  /** The no-op fetch every snapshot job starts with (part of sidecarSeconds). */
  sidecarFetchSeconds: number;
  archiveBytes: number;
  cliArchiveBytes: number;
  /** Snapshot job while `loadClients` clones stream from the same sidecar. */
  underLoadSeconds: number;
  loadClients: number;
  /** Median over the loaded runs of the sidecar's p99 gauge for the snapshot's window. */
  eventLoopP99Ms: number;
  /** Worst single event-loop delay seen in any loaded run. */
  eventLoopMaxMs: number;
  /** The same gauges over an idle window: the floor (they include the 10 ms sampling interval). */
  idleEventLoopP99Ms: number;
  idleEventLoopMaxMs: number;
  samples: Record<string, number[]>;
}

const P99_GAUGE = 'gitmirror_event_loop_delay_p99_seconds';
/** prom-client's default event-loop max, reset on each scrape like the p99 gauge. */
const MAX_GAUGE = 'gitmirror_nodejs_eventloop_lag_max_seconds';

/**
 * Snapshot creation: the sidecar's snapshot job (admin `POST .../snapshot?wait=true`:
 * no-op fetch, tar + zstd in a worker, sha256, store write with fsync, manifest, prune)
 * against `tar -cf - | zstd -T0 -3` of the same mirror plus a `sync` of its output, so both
 * end with the archive durable. Then the same job while clones stream from the sidecar,
 * reading the event-loop gauges for exactly the snapshot's window.
 */
export async function measureSnapshot(
  ctx: BenchContext,
  writer: BenchSidecar,
  paths: { mirrorDir: string; storeRepoDir: string },
  loadClients: number,
): Promise<SnapshotResult> {
  const scratch = join(ctx.workDir, 'snapshot');
  await mkdir(scratch, { recursive: true });
  const cliOut = join(scratch, 'cli.tar.zst');
  const admin = `${writer.adminUrl}/v1/mirrors/${ctx.repoId}`;
  let archiveBytes = 0;

  const publish = async () => {
    // Without a manifest the job cannot skip as "unchanged", and old archives do not pile up.
    await rm(paths.storeRepoDir, { recursive: true, force: true });
    const [body, seconds] = await timed(async () => {
      const res = await fetch(`${admin}/snapshot?wait=true`, { method: 'POST' });
      if (!res.ok) throw new Error(`snapshot failed: ${res.status} ${await res.text()}`);
      return (await res.json()) as { result: string; manifest: { sizeBytes: number } };
    });
    if (body.result !== 'published') throw new Error(`snapshot was ${body.result}, not published`);
    archiveBytes = body.manifest.sizeBytes;
    return seconds;
  };
  const cli = async () => {
    await rm(cliOut, { force: true });
    const [, seconds] = await timed(() =>
      sh(
        `tar -cf - -C ${quote(paths.mirrorDir)} . | zstd -q -T0 -3 > ${quote(cliOut)} && sync ${quote(cliOut)}`,
      ),
    );
    return seconds;
  };
  const noopFetch = async () => {
    const [, seconds] = await timed(async () => {
      const res = await fetch(`${admin}/fetch?wait=true`, { method: 'POST' });
      if (!res.ok) throw new Error(`fetch failed: ${res.status} ${await res.text()}`);
    });
    return seconds;
  };

  ctx.log('snapshot: sidecar job vs tar | zstd -T0 -3');
  const quiet = await alternate(ctx.runs, { 'tar | zstd': cli, 'sidecar snapshot': publish }, ctx.log);
  const fetches = await alternate(ctx.runs, { 'no-op fetch': noopFetch }, ctx.log);
  const cliArchiveBytes = (await stat(cliOut)).size;
  await rm(cliOut, { force: true });

  ctx.log('snapshot: idle event-loop window');
  await writer.metrics();
  await sleep(3000);
  const idle = await writer.metrics();

  ctx.log(`snapshot: sidecar job while ${loadClients} clones stream from it`);
  const repoUrl = `${writer.gitUrl}/git/${ctx.repoId}.git`;
  const loaded: number[] = [];
  const p99s: number[] = [];
  const maxes: number[] = [];
  let clone = 0;
  for (let run = 0; run < ctx.runs; run++) {
    const load = backgroundLoad(loadClients, (i, signal) =>
      cloneBare(repoUrl, join(scratch, `load-${i}-${++clone}.git`), signal),
    );
    try {
      // Let the clones get past negotiation into streaming their packs.
      await sleep(2000);
      await writer.metrics();
      const seconds = await publish();
      const gauges = await writer.metrics();
      loaded.push(seconds);
      p99s.push((metricValue(gauges, P99_GAUGE) ?? Number.NaN) * 1000);
      maxes.push((metricValue(gauges, MAX_GAUGE) ?? Number.NaN) * 1000);
      ctx.log(
        `  loaded run ${run + 1}/${ctx.runs}: ${seconds.toFixed(2)} s, event loop p99 ${p99s.at(-1)!.toFixed(1)} ms, max ${maxes.at(-1)!.toFixed(1)} ms`,
      );
    } finally {
      await load.stop();
    }
  }
  return {
    cliSeconds: median(quiet['tar | zstd']),
    sidecarSeconds: median(quiet['sidecar snapshot']),
    sidecarFetchSeconds: median(fetches['no-op fetch']),
    archiveBytes,
    cliArchiveBytes,
    underLoadSeconds: median(loaded),
    loadClients,
    eventLoopP99Ms: median(p99s),
    eventLoopMaxMs: Math.max(...maxes),
    idleEventLoopP99Ms: (metricValue(idle, P99_GAUGE) ?? Number.NaN) * 1000,
    idleEventLoopMaxMs: (metricValue(idle, MAX_GAUGE) ?? Number.NaN) * 1000,
    samples: {
      ...quiet,
      ...fetches,
      'sidecar snapshot under load': loaded,
      'event loop p99 ms': p99s,
      'event loop max ms': maxes,
    },
  };
}
