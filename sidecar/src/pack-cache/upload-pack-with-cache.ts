import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../../../core/log.ts';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SpawnedProcess } from '../process/child-process.ts';
import { HOOK_FD_ENV, type HookRequest, readHookRequest, uploadPackHookArgs } from './hook-channel.ts';
import type { PackCache } from './pack-cache.ts';
import type { LeaseRole, PackLease } from './pack-entry.ts';
import { parsePackObjectsArgs } from './pack-request.ts';
import { FLUSH, relayHoldingFlush, writeSidebandPack } from './sideband-splice.ts';

/** How a request's pack was made: from the cache (a hit, a joined generation or a new one), or by its own pack-objects. */
export type PackSource = LeaseRole | 'bypass';

/** upload-pack's default keepalive (uploadpack.keepAlive), kept while a pack is spliced in. */
export const KEEPALIVE_MS = 5_000;
const MAX_STDIN_BYTES = 32 * 1024 * 1024;

export interface CachedUploadPack {
  git: GitRunner;
  cache: PackCache;
  logger: Logger;
  /** The mirror upload-pack serves. */
  repo: { id: string; dir: string };
  /** The request body (decoded), for upload-pack's stdin. */
  body: Readable;
  /** GIT_PROTOCOL for upload-pack (sanitised by the caller). */
  protocol?: string;
  out: Writable;
  timeoutMs: number;
  /** Silence before a keepalive while a spliced pack is generated (default upload-pack's 5 s). */
  keepaliveMs?: number;
  /** pack-objects' stdin above this (a fetch with a million haves) is not cached (default 32 MiB). */
  maxStdinBytes?: number;
  /** Called with upload-pack once started, so the caller can stop it if the client leaves. */
  started?(proc: SpawnedProcess): void;
  /** Told the size of each piece of the response as it is written to `out`. */
  written?(bytes: number): void;
}

export interface CachedUploadPackResult {
  /** How pack-objects' work was done, when upload-pack got that far. */
  pack?: PackSource;
}

/**
 * `git upload-pack --stateless-rpc` for a client that reads the pack from side-band-64k
 * packets, with the pack cache in pack-objects' place. upload-pack negotiates as always; when
 * it would run pack-objects its hook hands pack-objects' arguments and stdin to the sidecar
 * over fd 3. The sidecar takes a lease on the matching entry (hit, joined or a new
 * generation) and answers `splice`: the hook exits without output, upload-pack ends with
 * its flush packet, and this relay writes the pack from the entry's file before that flush.
 * When the cache cannot take it, the hook runs pack-objects itself and upload-pack streams
 * as without a cache. Rejects if upload-pack or the generation fails; the caller must then
 * end the response abnormally (the client never sees a success with a partial pack).
 */
export async function uploadPackWithCache(options: CachedUploadPack): Promise<CachedUploadPackResult> {
  const proc = options.git.spawn({
    args: [...uploadPackHookArgs(), 'upload-pack', '--stateless-rpc', options.repo.dir],
    timeoutMs: options.timeoutMs,
    env: { [HOOK_FD_ENV]: '3', ...(options.protocol ? { GIT_PROTOCOL: options.protocol } : {}) },
    stdin: options.body,
    channel: true,
  });
  options.started?.(proc);
  const written = options.written ?? (() => {});
  proc.stdout.on('data', (chunk: Buffer) => written(chunk.length));
  const answered = answerHook(proc, options);
  let handed: { lease: PackLease; progress: boolean } | undefined;
  try {
    const held = relayHoldingFlush(proc.stdout, options.out);
    // Awaited only after proc.done: if that rejects first, held's own failure must not go unhandled.
    held.catch(() => {});
    await proc.done;
    const tail = await held;
    const answer = await answered;
    if (!('lease' in answer)) {
      options.out.write(tail);
      return { pack: answer.pack };
    }
    handed = answer;
    if (!tail.equals(FLUSH)) throw new Error('upload-pack did not end with a flush packet after its hook');
    const files = options.cache.fileSender;
    const sent = await writeSidebandPack(handed.lease, options.out, {
      progress: handed.progress,
      keepaliveMs: options.keepaliveMs ?? KEEPALIVE_MS,
      written,
      sender: files && { files, timeoutMs: options.timeoutMs },
    });
    options.out.write(FLUSH);
    handed.lease.release(sent);
    return { pack: handed.lease.role };
  } finally {
    handed?.lease.release();
    void answered.then((answer) => ('lease' in answer ? answer.lease.release() : undefined));
  }
}

type HookAnswer = { lease: PackLease; progress: boolean } | { pack?: 'bypass' };

/** Waits for the hook's request, if one comes, and answers it with a lease or a bypass. */
async function answerHook(proc: SpawnedProcess, options: CachedUploadPack): Promise<HookAnswer> {
  const channel = proc.channel!;
  let request: HookRequest | undefined;
  try {
    request = await readHookRequest(channel, options.maxStdinBytes ?? MAX_STDIN_BYTES);
  } catch (err) {
    // A request it cannot take hangs up on the hook, which then runs pack-objects itself.
    channel.destroy();
    options.cache.noteBypass('unsupported');
    options.logger.debug({ mirror: options.repo.id, reason: describeError(err) }, 'pack cache bypassed');
    return { pack: 'bypass' };
  }
  if (!request) return {};
  const bypass = (reason: string): HookAnswer => {
    options.logger.debug({ mirror: options.repo.id, reason }, 'pack cache bypassed');
    channel.end('bypass\n');
    return { pack: 'bypass' };
  };
  const parsed =
    request.args[0] === 'git' ? parsePackObjectsArgs(request.args.slice(1), request.stdin) : undefined;
  if (!parsed || 'unsupported' in parsed) {
    options.cache.noteBypass('unsupported');
    return bypass(parsed ? parsed.unsupported : 'not a git command');
  }
  try {
    const acquired = await options.cache.acquire({
      repoId: options.repo.id,
      dir: options.repo.dir,
      request: parsed,
    });
    if ('bypass' in acquired) return bypass(acquired.bypass);
    channel.end('splice\n');
    return { lease: acquired.lease, progress: parsed.progress };
  } catch (err) {
    options.cache.noteBypass('unavailable');
    return bypass(describeError(err));
  }
}
