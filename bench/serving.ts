import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { metricValue } from '../testing/metrics.ts';
import {
  type ConcurrentResult,
  cloneBare,
  concurrently,
  uploadPackToNull,
  writeCloneRequest,
} from './clients.ts';
import type { BenchContext } from './context.ts';
import type { BenchSidecar } from './sidecar-process.ts';
import type { HttpBackend } from './upstream.ts';
import { alternate, median, percentile } from './util.ts';

export interface LatencySummary {
  p50Seconds: number;
  p99Seconds: number;
  failures: number;
  samples: number;
}

export interface ConcurrencyResult extends LatencySummary {
  clients: number;
  /** Peak RSS of the sidecar process over this phase (its git children not included). */
  peakRssMiB: number;
  /** The same clients against `git http-backend` on the same mirror. */
  direct: LatencySummary;
  /** The same number of bare upload-pack requests (pack to /dev/null). */
  uploadPack: LatencySummary & { direct: LatencySummary };
  errors: string[];
}

export interface PackCacheResult {
  /**
   * `clients` concurrent identical upload-packs on a sidecar just started with the default
   * TTL (its cache swept empty at start): a CI fan-out whose pack nobody has asked for yet.
   */
  fanOut: LatencySummary;
  /** pack-objects runs during each fan-out round (identical requests share one). */
  generationsPerRound: number;
  /** CPU of the sidecar and its children per upload-pack whose pack was generated (a miss), median. */
  cpuPerGeneratedSeconds: number;
  /** The same for an upload-pack answered from a completed cache entry (a hit), median. */
  cpuPerCachedSeconds: number;
  /** One upload-pack answered from the cache, wall time, median. */
  hitSeconds: number;
  /** `clients` concurrent upload-packs all answered from the cache. */
  concurrentHits: LatencySummary;
}

export interface ServingResult {
  /** One `git clone --bare` at a time, median (the pack cache keeps nothing: each one generates). */
  directSeconds: number;
  sidecarSeconds: number;
  /** One upload-pack request at a time, pack streamed to /dev/null, median (each one generates). */
  uploadPack: { directSeconds: number; sidecarSeconds: number };
  packCache: PackCacheResult;
  concurrent1: { sidecar: LatencySummary; direct: LatencySummary };
  /**
   * The sidecar process's memory (its git children not included): resident while idle with
   * its mirror ready, and the peak (`VmHWM`, reset before the phase) while serving one clone
   * at a time.
   */
  memory: { idleRssMiB: number; oneClientPeakRssMiB: number };
  concurrent: ConcurrencyResult;
  samples: Record<string, number[]>;
}

function summarize(results: ConcurrentResult[]): LatencySummary {
  const seconds = results.flatMap((r) => r.seconds);
  return {
    p50Seconds: percentile(seconds, 50),
    p99Seconds: percentile(seconds, 99),
    failures: results.reduce((n, r) => n + r.failures, 0),
    samples: seconds.length,
  };
}

function fromSamples(seconds: number[]): LatencySummary {
  return summarize([{ seconds, failures: 0, errors: [], wallSeconds: 0 }]);
}

/**
 * Serving the same mirror two ways: through the sidecar, and through `git http-backend`
 * pointed at the sidecar's own mirror directory (same packs, bitmaps and config), so the
 * difference is the serving path alone. `sidecar` runs with GITMIRROR_PACK_CACHE_TTL=0:
 * identical requests in flight share one generation, but nothing completed is kept, so
 * every one-at-a-time request pays for its pack (the cache must not slow a miss down).
 * `startWarm` stops it and starts one with the default TTL, as a user runs it, for the
 * fan-out from an empty cache and the figures of packs served from disk.
 */
export async function measureServing(
  ctx: BenchContext,
  sidecar: BenchSidecar,
  direct: HttpBackend,
  mirrorDir: string,
  rounds: number,
  startWarm: () => Promise<BenchSidecar>,
): Promise<ServingResult> {
  const scratch = join(ctx.workDir, 'serving');
  await mkdir(scratch, { recursive: true });
  const requestFile = join(scratch, 'clone-request.pkt');
  await writeCloneRequest(mirrorDir, requestFile);
  const urls = { sidecar: `${sidecar.gitUrl}/git/${ctx.repoId}.git`, direct: direct.url('bench/repo.git') };
  let n = 0;
  const clone = (url: string) => () => cloneBare(url, join(scratch, `clone-${++n}.git`));
  const pack = (url: string) => () => uploadPackToNull(url, requestFile);

  // One of each first, unmeasured: the mirror's packs into the page cache for both.
  await pack(urls.direct)();
  await pack(urls.sidecar)();

  ctx.log('serving: one clone at a time');
  // Idle: let the warm-up requests' garbage go first, as it would between clones.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const idleRssMiB = await sidecar.rssMiB();
  const oneResetOk = await sidecar.resetPeakRss();
  const clones = await alternate(
    ctx.runs,
    { 'clone via http-backend': clone(urls.direct), 'clone via sidecar': clone(urls.sidecar) },
    ctx.log,
  );
  const oneClientPeakRssMiB = oneResetOk ? await sidecar.peakRssMiB() : Number.NaN;
  ctx.log('serving: one upload-pack request at a time, pack to /dev/null');
  const generatedCpu: number[] = [];
  const packs = await alternate(
    ctx.runs,
    {
      'upload-pack via http-backend': pack(urls.direct),
      'upload-pack via sidecar': withCpu(sidecar, pack(urls.sidecar), generatedCpu),
    },
    ctx.log,
  );

  const clients = ctx.concurrency;
  const many = async (label: string, client: () => Promise<number>) => {
    const results: ConcurrentResult[] = [];
    for (let round = 0; round < rounds; round++) {
      const result = await concurrently(clients, client);
      ctx.log(
        `  ${label} round ${round + 1}/${rounds}: wall ${result.wallSeconds.toFixed(1)} s, p50 ${percentile(result.seconds, 50).toFixed(2)} s, failures ${result.failures}`,
      );
      results.push(result);
    }
    return results;
  };
  ctx.log(`serving: ${clients} concurrent clients`);
  const resetOk = await sidecar.resetPeakRss();
  if (!resetOk) ctx.log('  (could not reset the peak RSS count; it covers the whole process life)');
  const sidecarClones = await many(`${clients} clones via sidecar`, clone(urls.sidecar));
  const sidecarPacks = await many(`${clients} upload-packs via sidecar`, pack(urls.sidecar));
  const peakRssMiB = await sidecar.peakRssMiB();
  const directClones = await many(`${clients} clones via http-backend`, clone(urls.direct));
  const directPacks = await many(`${clients} upload-packs via http-backend`, pack(urls.direct));
  const cached = await measurePackCache({ ctx, startWarm, pack, repoPath: `/git/${ctx.repoId}.git`, rounds });
  const errors = [...sidecarClones, ...sidecarPacks, ...cached.fanOut, ...cached.hits].flatMap(
    (r) => r.errors,
  );
  for (const e of errors) ctx.log(`  failure: ${e}`);

  return {
    directSeconds: median(clones['clone via http-backend']),
    sidecarSeconds: median(clones['clone via sidecar']),
    uploadPack: {
      directSeconds: median(packs['upload-pack via http-backend']),
      sidecarSeconds: median(packs['upload-pack via sidecar']),
    },
    concurrent1: {
      sidecar: fromSamples(clones['clone via sidecar']),
      direct: fromSamples(clones['clone via http-backend']),
    },
    memory: { idleRssMiB, oneClientPeakRssMiB },
    packCache: {
      fanOut: summarize(cached.fanOut),
      generationsPerRound: cached.generations / rounds,
      cpuPerGeneratedSeconds: median(generatedCpu),
      cpuPerCachedSeconds: median(cached.cpu),
      hitSeconds: median(cached.seconds),
      concurrentHits: summarize(cached.hits),
    },
    concurrent: {
      clients,
      ...summarize(sidecarClones),
      peakRssMiB,
      direct: summarize(directClones),
      uploadPack: { ...summarize(sidecarPacks), direct: summarize(directPacks) },
      errors,
    },
    samples: {
      ...clones,
      ...packs,
      [`${clients} clones via sidecar`]: sidecarClones.flatMap((r) => r.seconds),
      [`${clients} clones via http-backend`]: directClones.flatMap((r) => r.seconds),
      [`${clients} upload-packs via sidecar`]: sidecarPacks.flatMap((r) => r.seconds),
      [`${clients} upload-packs via http-backend`]: directPacks.flatMap((r) => r.seconds),
      [`${clients} upload-packs, empty cache`]: cached.fanOut.flatMap((r) => r.seconds),
      'CPU per generated upload-pack': generatedCpu,
      'CPU per cached upload-pack': cached.cpu,
      'upload-pack from the cache': cached.seconds,
      [`${clients} upload-packs from the cache`]: cached.hits.flatMap((r) => r.seconds),
    },
  };
}

/** Wraps a client so the sidecar's CPU (children included) over each run lands in `samples`. */
function withCpu(sidecar: BenchSidecar, client: () => Promise<number>, samples: number[]) {
  return async () => {
    const before = await sidecar.cpuSeconds();
    const seconds = await client();
    samples.push((await sidecar.cpuSeconds()) - before);
    return seconds;
  };
}

async function generations(sidecar: BenchSidecar): Promise<number> {
  const text = await sidecar.metrics();
  return metricValue(text, 'gitmirror_pack_cache_generations_total', { outcome: 'success' }) ?? 0;
}

/**
 * The pack cache as it is configured by default (TTL of minutes). Each round starts a fresh
 * sidecar on the same mirror, so its cache is empty, and sends `concurrency` identical
 * upload-packs at once (the CI fan-out: one generation, the rest join it or hit it). The
 * last sidecar then serves the same request from its completed entry, one at a time (wall
 * and CPU of a hit) and from many clients at once.
 */
async function measurePackCache(options: {
  ctx: BenchContext;
  startWarm: () => Promise<BenchSidecar>;
  pack: (url: string) => () => Promise<number>;
  repoPath: string;
  rounds: number;
}): Promise<{
  fanOut: ConcurrentResult[];
  generations: number;
  cpu: number[];
  seconds: number[];
  hits: ConcurrentResult[];
}> {
  const { ctx, pack, rounds } = options;
  const clients = ctx.concurrency;
  ctx.log('serving: the pack cache with its default TTL, on a sidecar started afresh (empty cache)');
  const fanOut: ConcurrentResult[] = [];
  let generated = 0;
  for (let round = 0; ; round++) {
    const warm = await options.startWarm();
    try {
      const url = `${warm.gitUrl}${options.repoPath}`;
      const result = await concurrently(clients, pack(url));
      const runs = await generations(warm);
      generated += runs;
      fanOut.push(result);
      ctx.log(
        `  ${clients} upload-packs, empty cache, round ${round + 1}/${rounds}: wall ${result.wallSeconds.toFixed(1)} s, p50 ${percentile(result.seconds, 50).toFixed(2)} s, pack-objects runs ${runs}, failures ${result.failures}`,
      );
      if (round + 1 < rounds) continue;
      const cpu: number[] = [];
      const seconds: number[] = [];
      for (let run = 0; run < ctx.runs; run++) {
        seconds.push(await withCpu(warm, pack(url), cpu)());
        ctx.log(
          `  upload-pack from the cache run ${run + 1}/${ctx.runs}: ${seconds.at(-1)!.toFixed(2)} s, CPU ${cpu.at(-1)!.toFixed(2)} s`,
        );
      }
      const hits: ConcurrentResult[] = [];
      for (let hitRound = 0; hitRound < rounds; hitRound++) {
        const result = await concurrently(clients, pack(url));
        ctx.log(
          `  ${clients} upload-packs from the cache round ${hitRound + 1}/${rounds}: wall ${result.wallSeconds.toFixed(1)} s, p50 ${percentile(result.seconds, 50).toFixed(2)} s, failures ${result.failures}`,
        );
        hits.push(result);
      }
      return { fanOut, generations: generated, cpu, seconds, hits };
    } finally {
      await warm.stop();
    }
  }
}
