import type { RepoId } from '../../../core/repo-id.ts';
import type { PackSource } from '../pack-cache/upload-pack-with-cache.ts';
import type { GitAction } from './git-path.ts';

/** Git LFS under a repository's `info/lfs`: the batch API, an object download, the locks API. */
export type LfsRoute = 'lfs-batch' | 'lfs-object' | 'lfs-locks';

/** Where a git request's answer came from, as the request log and `http_requests_total` name it. */
export type AnswerSource = 'local' | 'upstream' | 'shared' | 'denied' | 'store';

/** Where the response body came from, as `http_response_bytes_total{source}` names it. */
export type BytesSource = 'local' | 'upstream' | 'shared_upstream';

/**
 * One git request as its log line and metrics describe it: created when it arrives, filled
 * in by whoever serves it, and read once when it ends (server/request-log.ts).
 */
export interface RequestContext {
  /** `performance.now()` on arrival. */
  readonly startedAt: number;
  route: GitAction | LfsRoute | 'other';
  repo?: RepoId;
  source?: AnswerSource;
  /** Response body bytes, counted where they are produced; absent when no body was relayed. */
  bytes?: { source: BytesSource; count: number };
  /** How the pack of a local upload-pack was made, when one was: from the pack cache, or bypassing it. */
  pack?: PackSource;
}

export function newRequestContext(): RequestContext {
  return { startedAt: performance.now(), route: 'other' };
}

/** Starts counting the response body from `source`; the returned function adds each chunk. */
export function countBytes(ctx: RequestContext, source: BytesSource): (count: number) => void {
  const bytes = { source, count: 0 };
  ctx.bytes = bytes;
  return (count) => {
    bytes.count += count;
  };
}
