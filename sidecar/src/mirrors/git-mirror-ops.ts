import { createHash } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { CredentialSource } from '../git/credentials.ts';
import type { GitRunner } from '../git/git-runner.ts';
import { applyMirrorConfig, packThreads } from '../git/mirror-config.ts';
import type { HostGate } from '../upstream/host-gate.ts';
import { exists } from './data-layout.ts';

/** Git work on one mirror directory; every call has a timeout and dies with its process group. */
export interface MirrorGitContext {
  git: GitRunner;
  dir: string;
  upstream: string;
  /** Asked before each command that talks to upstream: no command starts on credentials about to expire. */
  credentials?: CredentialSource;
  /** The upstream host's gate: clone, fetch and ls-remote take a turn there (by `mirrorId`). */
  gate?: HostGate;
  mirrorId?: string;
  /**
   * Set when `upstream` is the fleet's snapshot writer (its peer endpoint) rather than the
   * upstream host: nothing is gated or traced, and git sends these headers (the fleet's token).
   */
  peer?: { httpHeaders: string[] };
}

/**
 * Runs work that talks to upstream in a turn at its host's gate (when the context has one),
 * with git told to trace its HTTP answers so a throttle comes back as UPSTREAM_THROTTLED.
 */
function atUpstream<T>(
  ctx: MirrorGitContext,
  work: 'transfer' | 'ref-check',
  signal: AbortSignal | undefined,
  run: (http: { upstreamHost?: string; onRequestSent?: () => void }) => Promise<T>,
): Promise<T> {
  const upstreamHost = httpHost(ctx.upstream);
  // A local path (tests) has no host to gate or trace; nor has the fleet's writer.
  if (upstreamHost === undefined || ctx.peer) return run({});
  if (!ctx.gate) return run({ upstreamHost });
  return ctx.gate.run({ work, key: ctx.mirrorId ?? ctx.upstream, signal }, (turn) =>
    run({ upstreamHost, onRequestSent: () => turn.requestSent() }),
  );
}

const LOCAL_TIMEOUT_MS = 60_000;

/**
 * `git clone --mirror` into a fresh temp dir. Clone has no low-speed abort: upstreams can
 * spend minutes computing a large pack before the first byte.
 */
function httpHost(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.host : undefined;
  } catch {
    return undefined;
  }
}

export async function cloneInto(
  ctx: MirrorGitContext,
  tempDir: string,
  timeoutMs: number,
  signal?: AbortSignal,
) {
  const target = join(tempDir, 'repo.git');
  await atUpstream(ctx, 'transfer', signal, async (http) =>
    ctx.git.run({
      args: ['clone', '--mirror', '--quiet', '--', ctx.upstream, target],
      // Never the process's own directory: git must not depend on where the sidecar started.
      cwd: tempDir,
      timeoutMs,
      signal,
      credentials: await ctx.credentials?.forCommand(timeoutMs),
      ...http,
    }),
  );
  await applyMirrorConfig(ctx.git, target, ctx.upstream);
  return target;
}

/**
 * Moves a complete, configured repository into place with rename. If a mirror is already
 * there it is first renamed to `retiredPath` (swept, or put back after a crash).
 */
export async function installMirror(
  prepared: string,
  dir: string,
  retiredPath: string,
): Promise<string | undefined> {
  await mkdir(dirname(dir), { recursive: true });
  let retired: string | undefined;
  if (await exists(dir)) {
    await rename(dir, retiredPath);
    retired = retiredPath;
  }
  await rename(prepared, dir);
  return retired;
}

export interface FetchOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Abort when the transfer crawls; off for catch-up fetches of large deltas. */
  lowSpeedAbort: boolean;
}

/**
 * `--atomic`: without it git prunes before the pack arrives and then updates each ref on its
 * own, so a fetch that fails or is killed mid-way leaves refs upstream never had (a deleted
 * tag gone, the branch moved before it not), served until the next fetch succeeds. Since git
 * 2.36 the one transaction covers pruning too.
 */
const PRUNE_ORIGIN = ['--atomic', '--prune', '--prune-tags', '--quiet', 'origin'];

export async function fetchMirror(ctx: MirrorGitContext, options: FetchOptions): Promise<void> {
  const speed = options.lowSpeedAbort ? ['-c', 'http.lowSpeedLimit=1000', '-c', 'http.lowSpeedTime=120'] : [];
  // From the writer: every ref as it has them, pruned like origin's mirror refspec prunes.
  const from = ctx.peer ? ['--atomic', '--prune', '--quiet', ctx.upstream, '+refs/*:refs/*'] : PRUNE_ORIGIN;
  await atUpstream(ctx, 'transfer', options.signal, async (http) =>
    ctx.git.run({
      args: [...speed, 'fetch', ...from],
      cwd: ctx.dir,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      credentials: await ctx.credentials?.forCommand(options.timeoutMs),
      httpHeaders: ctx.peer?.httpHeaders,
      ...http,
    }),
  );
}

/** Refs as `name → object id`, from the local mirror. */
export async function localRefs(ctx: MirrorGitContext): Promise<Map<string, string>> {
  const { stdout } = await ctx.git.run({
    args: ['for-each-ref', '--format=%(objectname) %(refname)'],
    cwd: ctx.dir,
    timeoutMs: LOCAL_TIMEOUT_MS,
  });
  return parseRefLines(stdout);
}

/** Refs as upstream advertises them now; peeled tags and HEAD left out to match `localRefs`. */
export async function upstreamRefs(
  ctx: MirrorGitContext,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Map<string, string>> {
  const { stdout } = await atUpstream(ctx, 'ref-check', signal, async (http) =>
    ctx.git.run({
      args: ['ls-remote', '--', ctx.upstream],
      cwd: ctx.dir,
      timeoutMs,
      signal,
      credentials: await ctx.credentials?.forCommand(timeoutMs),
      httpHeaders: ctx.peer?.httpHeaders,
      ...http,
    }),
  );
  const refs = parseRefLines(stdout.replaceAll('\t', ' '));
  for (const name of refs.keys()) if (name === 'HEAD' || name.endsWith('^{}')) refs.delete(name);
  return refs;
}

function parseRefLines(text: string): Map<string, string> {
  const refs = new Map<string, string>();
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ');
    if (space > 0) refs.set(line.slice(space + 1).trim(), line.slice(0, space));
  }
  return refs;
}

export function sameRefs(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, oid] of a) if (b.get(name) !== oid) return false;
  return true;
}

/** Commit HEAD points at, or undefined for an empty repository. */
export async function headCommit(ctx: MirrorGitContext): Promise<string | undefined> {
  try {
    const { stdout } = await ctx.git.run({
      args: ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'],
      cwd: ctx.dir,
      timeoutMs: LOCAL_TIMEOUT_MS,
    });
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A digest of every ref and of HEAD's target: equal digests mean nothing changed worth a new snapshot. */
export async function refsDigest(ctx: MirrorGitContext): Promise<string> {
  const refs = await localRefs(ctx);
  const head = await ctx.git
    .run({ args: ['symbolic-ref', '-q', 'HEAD'], cwd: ctx.dir, timeoutMs: LOCAL_TIMEOUT_MS })
    .then((r) => r.stdout.trim())
    .catch(() => '');
  const hash = createHash('sha256').update(`HEAD ${head}\n`);
  for (const name of [...refs.keys()].sort()) hash.update(`${refs.get(name)} ${name}\n`);
  return hash.digest('hex');
}

/**
 * Which of these object ids the mirror lacks. One `cat-file --batch-check` for all of
 * them, so checking a clone's wants costs one process, not one per want.
 */
export async function missingObjects(ctx: MirrorGitContext, oids: string[]): Promise<string[]> {
  if (oids.length === 0) return [];
  const { stdout } = await ctx.git.run({
    args: ['cat-file', '--batch-check=%(objectname)'],
    cwd: ctx.dir,
    timeoutMs: LOCAL_TIMEOUT_MS,
    stdin: `${oids.join('\n')}\n`,
  });
  return stdout
    .split('\n')
    .filter((line) => line.endsWith(' missing'))
    .map((line) => line.split(' ')[0]!);
}

/**
 * Sanity check of a restored mirror before it is installed: every ref resolves to an
 * object that exists, and HEAD (if set) to a commit. Cost: one for-each-ref and one
 * cat-file over the ref tips, O(refs) — milliseconds even for thousands of refs. A full
 * `fsck` would cost minutes on large repos; the archive's sha256s already prove the bytes
 * are what the writer uploaded, so this guards against a writer that archived a broken mirror.
 */
export async function sanityCheck(ctx: MirrorGitContext, expectedCommit?: string): Promise<void> {
  const refs = await localRefs(ctx);
  const missing = await missingObjects(ctx, [...new Set(refs.values())]);
  if (missing.length > 0) {
    throw new GitMirrorError(
      'SANITY_CHECK_FAILED',
      `${missing.length} ref(s) point at missing objects, e.g. ${missing[0]}`,
    );
  }
  if (expectedCommit && (await missingObjects(ctx, [expectedCommit])).length > 0) {
    throw new GitMirrorError(
      'SANITY_CHECK_FAILED',
      `snapshot commit ${expectedCommit} is missing from the archive`,
    );
  }
}

/**
 * Geometric repack: rolls small packs into bigger ones so each repack touches little data,
 * and writes a multi-pack-index with bitmaps so clones count objects fast. Memory is bounded
 * per thread; a killed repack's stale MIDX lock is removed so it cannot block later ones.
 */
export async function repackMirror(
  ctx: MirrorGitContext,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await ctx.git.run({
      args: [
        '-c',
        `pack.threads=${packThreads()}`,
        '-c',
        'pack.windowMemory=256m',
        '-c',
        'pack.deltaCacheSize=128m',
        'repack',
        '-d',
        '--geometric=2',
        '--write-midx',
        '--write-bitmap-index',
        '--quiet',
      ],
      cwd: ctx.dir,
      timeoutMs,
      signal,
    });
    await ctx.git.run({
      args: ['commit-graph', 'write', '--reachable', '--split'],
      cwd: ctx.dir,
      timeoutMs,
      signal,
    });
  } catch (err) {
    await rm(join(ctx.dir, 'objects', 'pack', 'multi-pack-index.lock'), { force: true });
    throw err;
  }
}
