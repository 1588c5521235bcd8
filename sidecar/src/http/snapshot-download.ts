import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import type { RepoId } from '../../../core/repo-id.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { SnapshotService } from '../snapshot/snapshot-service.ts';
import { rangeOfRequest } from './byte-range.ts';

/**
 * `GET /git/{repo}/snapshot.tar.zst`: the latest published snapshot, for CI jobs that
 * bootstrap a checkout with `curl | zstd -d | tar -x` instead of a clone. The ETag is the
 * manifest's sha256 (format 2: of the archive's index, which hashes every piece; format 1:
 * of the whole archive), so it is stable for as long as the same snapshot is latest, and Range
 * requests resume or parallelise downloads safely with If-Range.
 */
export async function serveSnapshotDownload(
  snapshots: SnapshotService,
  repo: RepoId,
  req: Request,
  res: Response,
) {
  const manifest = await snapshots.latest(repo);
  if (!manifest)
    throw new GitMirrorError('SNAPSHOT_NOT_FOUND', `no snapshot has been published for ${repo.id}`);
  res.set({
    'Content-Type': 'application/zstd',
    'Content-Disposition': `attachment; filename="${repo.path.split('/').pop()}.tar.zst"`,
    'Last-Modified': new Date(manifest.createdAt).toUTCString(),
    'X-Gitmirror-Snapshot-Commit': manifest.commit,
    'Cache-Control': 'no-cache',
  });
  const plan = rangeOfRequest(req, res, { size: manifest.sizeBytes, etag: `"${manifest.sha256}"` });
  if (!plan) return;
  const { range } = plan;
  plan.respond();
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const body = await snapshots.store.get(manifest.key, range ? { range } : {});
  await pipeline(body, res);
}
