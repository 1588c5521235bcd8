import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
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

export interface ServingResult {
  /** One `git clone --bare` at a time, median. */
  directSeconds: number;
  sidecarSeconds: number;
  /** One upload-pack request at a time, pack streamed to /dev/null, median. */
  uploadPack: { directSeconds: number; sidecarSeconds: number };
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
 * difference is the serving path alone.
 */
export async function measureServing(
  ctx: BenchContext,
  sidecar: BenchSidecar,
  direct: HttpBackend,
  mirrorDir: string,
  rounds: number,
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
  const packs = await alternate(
    ctx.runs,
    { 'upload-pack via http-backend': pack(urls.direct), 'upload-pack via sidecar': pack(urls.sidecar) },
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
  const errors = [...sidecarClones, ...sidecarPacks].flatMap((r) => r.errors);
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
    },
  };
}
