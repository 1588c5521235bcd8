/**
 * The conversation between `pack-objects-hook.mjs` (run by upload-pack for each fetch) and
 * the sidecar, over a Unix socket in the data dir. One JSON object per line; the request
 * line is followed by exactly `stdinBytes` raw bytes: pack-objects' stdin as upload-pack
 * wrote it. The hook is plain JavaScript so that it starts without loading TypeScript, and
 * keeps its own copy of these shapes; `hook.test.ts` runs the two against each other.
 */
export interface HookRequest {
  v: 1;
  /** The hook's working directory: upload-pack runs it inside the repository. */
  dir: string;
  /** Everything after the hook's own path: `git [--shallow-file ""] pack-objects ...`. */
  args: string[];
  stdinBytes: number;
  /** GITMIRROR_PACK_CACHE_REQUEST: the sidecar request this upload-pack serves, if any. */
  request?: string;
}

export type HookReply =
  /** Run pack-objects yourself, as without the cache. */
  | { t: 'bypass'; reason: string }
  /** The sidecar writes this pack into the response itself: exit 0 without output. */
  | { t: 'splice' }
  /** Copy this file to stdout as it grows; `complete` with `bytes` when it is already whole. */
  | { t: 'read'; path: string; role: 'hit' | 'miss' | 'joined'; bytes: number; complete: boolean }
  | { t: 'size'; bytes: number }
  /** The pack is whole at exactly `bytes`. */
  | { t: 'done'; bytes: number }
  | { t: 'progress'; text: string }
  /** The generation failed: exit non-zero so upload-pack fails the fetch. */
  | { t: 'error'; message: string };

/** The hook's last line: how many bytes it passed to upload-pack. */
export interface HookSent {
  t: 'sent';
  bytes: number;
}

export const SOCKET_ENV = 'GITMIRROR_PACK_CACHE_SOCKET';
export const REQUEST_ENV = 'GITMIRROR_PACK_CACHE_REQUEST';
/** A request line longer than this is not a hook's. */
export const MAX_HEADER_BYTES = 64 * 1024;

/** Parses a request line, or explains why it is not one. */
export function parseHookRequest(line: string): HookRequest | { invalid: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { invalid: 'not JSON' };
  }
  const r = value as Partial<HookRequest>;
  if (r === null || typeof r !== 'object' || r.v !== 1) return { invalid: 'unknown protocol version' };
  if (typeof r.dir !== 'string' || !r.dir.startsWith('/')) return { invalid: 'dir must be an absolute path' };
  if (!Array.isArray(r.args) || !r.args.every((a) => typeof a === 'string'))
    return { invalid: 'args must be strings' };
  if (!Number.isSafeInteger(r.stdinBytes) || (r.stdinBytes ?? -1) < 0)
    return { invalid: 'stdinBytes must be a whole number' };
  if (r.request !== undefined && (typeof r.request !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(r.request)))
    return { invalid: 'request must be an id' };
  return { v: 1, dir: r.dir, args: r.args, stdinBytes: r.stdinBytes!, request: r.request };
}
