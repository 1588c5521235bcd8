import { availableParallelism } from 'node:os';
import type { GitRunner } from './git-runner.ts';
import { atLeast, type GitVersion } from './git-version.ts';

interface ConfigSetting {
  key: string;
  value: string;
  why: string;
  /** The first git (major, minor) that understands it; older ones get no such key at all. */
  since?: readonly [number, number];
}

/** Threads for pack work: bounded so several mirrors repacking at once cannot exhaust a node. */
export function packThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/**
 * Git configuration written into every mirror, for the git that runs (`version`). Each key is
 * here because serving many clones from one bare repository is a different workload from a
 * developer's repo.
 */
export function mirrorConfigSettings(version: GitVersion): ConfigSetting[] {
  return allSettings().filter((s) => !s.since || atLeast(version, s.since));
}

/** Keys of settings this git is too old for: removed from a mirror made by a newer one. */
export function tooNewSettings(version: GitVersion): string[] {
  return allSettings()
    .filter((s) => s.since && !atLeast(version, s.since))
    .map((s) => s.key);
}

function allSettings(): ConfigSetting[] {
  return [
    { key: 'core.bare', value: 'true', why: 'a mirror has no work tree' },
    {
      key: 'remote.origin.fetch',
      value: '+refs/*:refs/*',
      why: 'mirror every ref exactly, force-pushes included',
    },
    { key: 'remote.origin.mirror', value: 'true', why: 'marks the repository as a mirror for git tooling' },
    {
      key: 'protocol.version',
      value: '2',
      why: 'v2 lets fetches from upstream ask only for the refs they need',
    },
    {
      key: 'uploadpack.allowFilter',
      value: 'true',
      why: 'serve partial clones (--filter=blob:none, tree:0)',
    },
    {
      key: 'uploadpack.allowAnySHA1InWant',
      value: 'true',
      why: 'serve any commit by id, even one orphaned by a force-push',
    },
    // uploadpack.allowRefInWant stays off whatever the version: upload-pack then sends
    // wanted-refs before shallow-info, and git's v2 client fails shallow clones with
    // "expected 'packfile', received 'shallow-info'". Seen with git 2.39.5 and 2.47.3, and
    // upload-pack.c still writes the sections in that order on git's master (2026-08).
    {
      key: 'repack.writeBitmaps',
      value: 'true',
      why: 'bitmaps make counting objects for a clone near-instant',
    },
    { key: 'pack.useBitmaps', value: 'true', why: 'use those bitmaps when serving' },
    {
      key: 'pack.useBitmapBoundaryTraversal',
      value: 'true',
      why: 'faster bitmap walks for fetches with haves',
      since: [2, 42],
    },
    {
      key: 'pack.allowPackReuse',
      value: 'multi',
      why: 'send objects verbatim from every pack of the multi-pack bitmap, not just one (older gits reject "multi")',
      since: [2, 44],
    },
    { key: 'pack.writeBitmapHashCache', value: 'true', why: 'better delta reuse when serving from bitmaps' },
    { key: 'core.commitGraph', value: 'true', why: 'commit-graph speeds up negotiation and shallow walks' },
    { key: 'fetch.writeCommitGraph', value: 'true', why: 'keep the commit-graph current after every fetch' },
    { key: 'gc.writeCommitGraph', value: 'true', why: 'and after maintenance' },
    { key: 'core.multiPackIndex', value: 'true', why: 'one index over many packs after geometric repacks' },
    { key: 'fetch.unpackLimit', value: '1', why: 'keep fetched objects packed; loose objects slow serving' },
    { key: 'transfer.unpackLimit', value: '1', why: 'same, for every transfer' },
    {
      key: 'gc.auto',
      value: '0',
      why: 'no surprise gc while serving; repack runs on our schedule and keeps orphans',
    },
    { key: 'receive.autogc', value: '0', why: 'never gc as a side effect of a transfer' },
    { key: 'fetch.prune', value: 'true', why: 'deleted upstream branches disappear from the mirror too' },
    { key: 'fetch.pruneTags', value: 'true', why: 'and deleted tags' },
    { key: 'pack.threads', value: String(packThreads()), why: 'bound CPU per pack operation' },
    { key: 'pack.windowMemory', value: '256m', why: 'bound memory per delta window thread during repack' },
    { key: 'pack.deltaCacheSize', value: '128m', why: 'bound delta cache memory during repack' },
    { key: 'core.packedGitLimit', value: '1g', why: 'bound mmapped pack memory per serving process' },
    {
      key: 'http.postBuffer',
      value: '524288000',
      why: 'large negotiation requests to upstream without chunked-encoding quirks',
    },
  ];
}

/**
 * Writes the settings into a repository's own config file through `git config --file`, so a
 * mirror restored from a snapshot made by an older version gets today's keys. Each write is
 * a git process, and a restored mirror usually has every key already: one `--list` first
 * and only the keys that differ are written, which takes a cold start's ~27 processes
 * (about 0.15 s on two cores, more under load) down to one.
 *
 * Every call runs in the repository itself: `git config --file` still looks for a repository
 * around its working directory, and one it cannot open (a git worktree's `.git` file pointing
 * outside a container) fails the call, so the caller's directory must not matter.
 */
export async function applyMirrorConfig(git: GitRunner, repoDir: string, upstream: string): Promise<void> {
  const file = `${repoDir}/config`;
  const version = await git.version();
  const settings = [
    { key: 'remote.origin.url', value: upstream, why: 'where fetches come from' },
    ...mirrorConfigSettings(version),
  ];
  const current = await configValues(git, repoDir);
  // A snapshot made under a newer git can carry a value this one rejects (allowPackReuse=multi).
  for (const key of tooNewSettings(version)) {
    if (!current.has(canonicalKey(key))) continue;
    await git.run({ args: ['config', '--file', file, '--unset-all', key], cwd: repoDir, timeoutMs: 30_000 });
  }
  for (const { key, value } of settings) {
    const values = current.get(canonicalKey(key));
    if (values?.length === 1 && values[0] === value) continue;
    // --replace-all: a key set several times (an extra fetch refspec) becomes exactly ours.
    await git.run({
      args: ['config', '--file', file, '--replace-all', key, value],
      cwd: repoDir,
      timeoutMs: 30_000,
    });
  }
}

/** Every value of every key in the file; empty when it cannot be read (then all are written). */
async function configValues(git: GitRunner, repoDir: string): Promise<Map<string, string[]>> {
  const values = new Map<string, string[]>();
  const listed = await git
    .run({ args: ['config', '--file', `${repoDir}/config`, '--list', '-z'], cwd: repoDir, timeoutMs: 30_000 })
    .catch(() => undefined);
  for (const entry of listed?.stdout.split('\0') ?? []) {
    const newline = entry.indexOf('\n');
    if (newline <= 0) continue;
    const key = entry.slice(0, newline);
    values.set(key, [...(values.get(key) ?? []), entry.slice(newline + 1)]);
  }
  return values;
}

/** `--list` lower-cases section and variable names; subsections keep their case. */
function canonicalKey(key: string): string {
  const first = key.indexOf('.');
  const last = key.lastIndexOf('.');
  return `${key.slice(0, first).toLowerCase()}${key.slice(first, last)}${key.slice(last).toLowerCase()}`;
}
