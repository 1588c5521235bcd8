import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../../testing/git-repos.ts';
import {
  type GitInvocation,
  type GitRunner,
  gitEnvironment,
  ProcessGitRunner,
} from '../../src/git/git-runner.ts';
import type { GitVersion } from '../../src/git/git-version.ts';
import type { PackLease } from '../../src/pack-cache/pack-entry.ts';
import { type RunResult, type SpawnedProcess, spawnProcess } from '../../src/process/child-process.ts';

const exec = promisify(execFile);

export interface Hold {
  /** Seconds before pack-objects starts. */
  startDelay?: number;
  /** Bytes written before the generation stalls until `releaseFile` exists. */
  stallAfterBytes?: number;
  releaseFile?: string;
  /** Extra environment for every git process, e.g. GIT_TRACE2_EVENT to count them. */
  env?: Record<string, string>;
}

/**
 * Real git, with every pack-objects generation recorded and optionally held up: `startDelay`
 * seconds before pack-objects starts (so identical requests pile up on one generation), or
 * `stallAfterBytes`: the first bytes are written, then nothing until `release()` (so a
 * generation can be killed in the middle). Writes are never lost or reordered.
 */
export class RecordingGit implements GitRunner {
  readonly generations: SpawnedProcess[] = [];
  private readonly real = new ProcessGitRunner();
  /** How the next generations are held up; a test may change it between requests. */
  hold: Hold;

  constructor(hold: Hold = {}) {
    this.hold = hold;
  }

  run(invocation: GitInvocation): Promise<RunResult> {
    return this.real.run(this.withEnv(invocation));
  }

  version(): Promise<GitVersion> {
    return this.real.version();
  }

  spawn(invocation: GitInvocation): SpawnedProcess {
    if (!invocation.args.includes('pack-objects')) return this.real.spawn(this.withEnv(invocation));
    const { startDelay = 0, stallAfterBytes, releaseFile = '/nonexistent' } = this.hold;
    const script =
      stallAfterBytes === undefined
        ? 'sleep "$1"; shift 3; exec git "$@"'
        : 'sleep "$1"; n=$2; release=$3; shift 3; git "$@" | { dd bs="$n" count=1 iflag=fullblock status=none; while [ ! -e "$release" ]; do sleep 0.05; done; cat; }';
    const hold = [String(startDelay), String(stallAfterBytes ?? 0), releaseFile];
    const proc = spawnProcess(
      'bash',
      // --norc: bash on a socket for stdin (as Node's pipes are) would otherwise read ~/.bashrc.
      ['--norc', '-o', 'pipefail', '-c', script, 'pack-objects', ...hold, ...invocation.args],
      {
        cwd: invocation.cwd,
        env: gitEnvironment(this.withEnv(invocation)),
        timeoutMs: invocation.timeoutMs,
        stdin: invocation.stdin,
        stdoutFd: invocation.stdoutFd,
      },
    );
    this.generations.push(proc);
    return proc;
  }

  private withEnv(invocation: GitInvocation): GitInvocation {
    return { ...invocation, env: { ...invocation.env, ...this.hold.env } };
  }
}

/** The pid of the real `git pack-objects` in a generation's process group. */
export async function packObjectsPid(generation: SpawnedProcess): Promise<number> {
  const { stdout } = await exec('ps', ['-o', 'pid=,args=', '-g', String(generation.child.pid)]);
  const line = stdout.split('\n').find((l) => /^\s*\d+ git .*pack-objects/.test(l));
  if (!line) throw new Error(`no pack-objects running in:\n${stdout}`);
  return Number(line.trim().split(' ')[0]);
}

/** How many `git pack-objects` processes wrote a trace2 start event to `traceFile`. */
export async function packObjectsStarted(traceFile: string): Promise<number> {
  const text = await readFile(traceFile, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.includes('"event":"start"'))
    .filter((line) => (JSON.parse(line) as { argv: string[] }).argv.includes('pack-objects')).length;
}

/** A repository with three branches that each add their own incompressible file. */
export async function createPackRepo(
  root: string,
): Promise<{ bare: string; work: string; branches: string[] }> {
  const { bare, work } = await createUpstreamRepo(root, 'repo', 3);
  const branches = ['alpha', 'beta', 'gamma'];
  for (const branch of branches) {
    await git(['checkout', '--quiet', '-b', branch, 'main'], { cwd: work });
    await writeFile(join(work, `${branch}.bin`), randomBytes(96 * 1024));
    await git(['add', `${branch}.bin`], { cwd: work });
    await git(['commit', '--quiet', '-m', branch], { cwd: work });
  }
  await git(['checkout', '--quiet', 'main'], { cwd: work });
  await addCommit(work, 'big.bin', randomBytes(256 * 1024).toString('base64'), 'big');
  await git(['push', '--quiet', 'origin', 'main', ...branches], { cwd: work });
  return { bare, work, branches };
}

/** pack-objects' stdin for a clone of `refs` (no haves), as upload-pack writes it. */
export async function cloneStdin(bare: string, refs: string[]): Promise<Buffer> {
  const tips = await Promise.all(refs.map(async (r) => (await git(['rev-parse', r], { cwd: bare })).trim()));
  return Buffer.from(`${tips.join('\n')}\n--not\n\n`);
}

export const CLONE_ARGS = [
  'pack-objects',
  '--revs',
  '--thin',
  '--stdout',
  '--delta-base-offset',
  '--include-tag',
];

/** Reads a lease's file while it grows, as a client would; rejects if its generation fails. */
export async function readLease(lease: PackLease): Promise<Buffer> {
  const file = await open(lease.path, 'r');
  const chunks: Buffer[] = [];
  let position = 0;
  try {
    for (;;) {
      const available = lease.bytes;
      while (position < available) {
        const { bytesRead, buffer } = await file.read({
          position,
          length: available - position,
          buffer: Buffer.alloc(available - position),
        });
        if (bytesRead === 0) break;
        chunks.push(buffer.subarray(0, bytesRead));
        position += bytesRead;
      }
      if (lease.state === 'failed') throw new Error(lease.error);
      if (lease.state === 'complete' && position === lease.bytes) return Buffer.concat(chunks);
      await lease.changed();
    }
  } finally {
    await file.close();
  }
}

/** Every object in a pack, by indexing it into an empty repository. */
export async function objectsInPack(pack: Buffer, scratch: string): Promise<string[]> {
  await git(['init', '--quiet', '--bare', scratch]);
  const indexing = exec('git', ['index-pack', '--stdin', '--strict'], { cwd: scratch, env: GIT_ENV });
  indexing.child.stdin?.end(pack);
  await indexing;
  const out = await git(['cat-file', '--batch-all-objects', '--batch-check=%(objectname)'], { cwd: scratch });
  return out.split('\n').filter(Boolean).sort();
}
