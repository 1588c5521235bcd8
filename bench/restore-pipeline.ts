import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseRepoId } from '../core/repo-id.ts';
import { manifestKey } from '../sidecar/src/snapshot/layout.ts';
import { downloadAndExtract } from '../sidecar/src/snapshot/restore-download.ts';
import { FileSnapshotStore } from '../sidecar/src/store/fs-store.ts';
import type { BenchContext } from './context.ts';
import { alternate, median, quote, sh, timed } from './util.ts';

export interface RestorePipelineResult {
  cliSeconds: number;
  sidecarSeconds: number;
  archiveBytes: number;
  samples: Record<string, number[]>;
}

/**
 * The restore pipeline alone, on the archive the writer published: the sidecar's
 * `downloadAndExtract` (read from the file store by the restore workers, size and every
 * piece's sha256 verified, zstd and tar in the workers, every entry policed) against
 * `zstd -dc X | tar -x -C dir` on the same archive, which verifies and polices nothing.
 */
export async function measureRestorePipeline(
  ctx: BenchContext,
  storeRoot: string,
): Promise<RestorePipelineResult> {
  const store = new FileSnapshotStore(storeRoot);
  const repo = parseRepoId(ctx.repoId);
  const manifest = JSON.parse(await readFile(join(storeRoot, manifestKey(repo)), 'utf8')) as {
    key: string;
    sizeBytes: number;
  };
  const archive = join(storeRoot, manifest.key);
  const scratch = join(ctx.workDir, 'restore-pipeline');
  await mkdir(scratch, { recursive: true });
  let n = 0;
  const cli = async () => {
    const target = join(scratch, `cli-${++n}`);
    await mkdir(target);
    const [, seconds] = await timed(() => sh(`zstd -dc ${quote(archive)} | tar -x -C ${quote(target)}`));
    await rm(target, { recursive: true, force: true });
    return seconds;
  };
  const sidecar = async () => {
    const [restored, seconds] = await timed(() => downloadAndExtract({ store, repo, tempParent: scratch }));
    await rm(restored.dir, { recursive: true, force: true });
    return seconds;
  };
  ctx.log('restore pipeline: sidecar vs zstd -dc | tar -x');
  const samples = await alternate(
    ctx.runs,
    { 'zstd -dc | tar -x': cli, 'sidecar restore': sidecar },
    ctx.log,
  );
  return {
    cliSeconds: median(samples['zstd -dc | tar -x']),
    sidecarSeconds: median(samples['sidecar restore']),
    archiveBytes: manifest.sizeBytes,
    samples,
  };
}
