import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { git } from '../testing/git.ts';
import type { BenchContext } from './context.ts';
import { spawnSidecar } from './sidecar-process.ts';
import { alternate, median, timed } from './util.ts';

export interface ColdStartResult {
  cloneMirrorSeconds: number;
  /** The writer sidecar's own cold start with no snapshot yet (clone → ready), one sample. */
  sidecarCloneSeconds?: number;
  restoreFileSeconds: number;
  /** null when no S3 server could be run; `restoreS3Skipped` says why. */
  restoreS3Seconds: number | null;
  restoreS3Skipped?: string;
  samples: Record<string, number[]>;
}

/**
 * A new replica's way to a usable mirror: `git clone --mirror` from upstream, against a
 * cold sidecar process (empty data dir) restoring the latest snapshot from the filesystem
 * store and from S3, timed from spawn to the first `/readyz` 200 — process start, restore
 * and the catch-up fetch included. Each restore is checked to have come from the snapshot;
 * a silent fallback to clone would make the figure meaningless.
 */
export async function measureColdStart(
  ctx: BenchContext,
  stores: { file: Record<string, string>; s3?: Record<string, string>; s3Skipped?: string },
): Promise<ColdStartResult> {
  const root = join(ctx.workDir, 'cold-start');
  await mkdir(root, { recursive: true });
  let n = 0;
  const cloneMirror = async () => {
    const target = join(root, `clone-${++n}.git`);
    const [, seconds] = await timed(() =>
      git(['clone', '--mirror', '--quiet', ctx.upstreamUrl, target], { timeoutMs: ctx.timeoutMs }),
    );
    await rm(target, { recursive: true, force: true });
    return seconds;
  };
  const restore = (label: string, storeEnv: Record<string, string>) => async () => {
    const dataDir = join(root, `${label}-${++n}`);
    const sidecar = await spawnSidecar({
      env: {
        GITMIRROR_DATA_DIR: dataDir,
        GITMIRROR_MIRRORS: ctx.upstreamUrl,
        GITMIRROR_HTTP_HOSTS: ctx.upstreamHost,
        ...storeEnv,
      },
      logFile: join(ctx.workDir, `sidecar-cold-${label}.log`),
      compileCache: ctx.compileCache,
      nodeArgs: ctx.sidecarNodeArgs(`cold-${label}`),
    });
    try {
      const seconds = await sidecar.waitReady(ctx.timeoutMs);
      const [mirror] = await sidecar.mirrors();
      if (mirror?.restore.source !== 'snapshot')
        throw new Error(
          `cold ${label} sidecar became ready from ${mirror?.restore.source ?? 'nothing'}, not the snapshot: ${mirror?.restore.error ?? ''}`,
        );
      return seconds;
    } finally {
      await sidecar.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  };
  const variants: Record<string, () => Promise<number>> = {
    'clone --mirror': cloneMirror,
    'restore (file store)': restore('file', stores.file),
  };
  if (stores.s3) variants['restore (S3)'] = restore('s3', stores.s3);
  const samples = await alternate(ctx.runs, variants, ctx.log);
  return {
    cloneMirrorSeconds: median(samples['clone --mirror']!),
    restoreFileSeconds: median(samples['restore (file store)']!),
    restoreS3Seconds: stores.s3 ? median(samples['restore (S3)']!) : null,
    ...(stores.s3 ? {} : { restoreS3Skipped: stores.s3Skipped ?? 'no S3 server' }),
    samples,
  };
}
