import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { Readable, type Writable } from 'node:stream';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

export interface RunOptions {
  cwd?: string;
  /** Complete environment for the child; callers build it so secrets stay per process. */
  env?: NodeJS.ProcessEnv;
  /** Kill the whole process group after this many milliseconds. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Bytes written to stdin, or a stream piped into it. */
  stdin?: string | Buffer | Readable;
  /** Cap on captured stdout; beyond it the run fails rather than growing memory. */
  maxStdoutBytes?: number;
  /**
   * An open file descriptor the child writes its stdout to directly, so large output never
   * passes through this process (the pack cache's generations); `stdout` is then empty.
   */
  stdoutFd?: number;
  /**
   * Give the child a fourth descriptor, fd 3: one end of a socket pair whose other end is
   * `channel`. It is inherited by the child's own children (upload-pack's hook uses it).
   */
  channel?: boolean;
  /**
   * Receives what the child writes to file descriptor 3 (a trace it was told to write there).
   * Not with `channel`: both are fd 3 (a trace is for commands that talk to upstream, the
   * channel for upload-pack).
   */
  onFd3?: (chunk: Buffer) => void;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface SpawnedProcess {
  child: ChildProcess;
  stdout: Readable;
  stdin: Writable;
  /** Resolves when the process exits; rejects on timeout, abort or non-zero exit. */
  done: Promise<{ stderr: string }>;
  kill(): void;
  /** The parent's end of fd 3, when `channel` was asked for. */
  channel?: Socket;
}

const STDERR_TAIL_BYTES = 16 * 1024;
const KILL_GRACE_MS = 2_000;

/**
 * Children started through here, so shutdown can kill every process group we own, including
 * grandchildren such as git-remote-https that a plain kill of the parent would orphan.
 */
const liveChildren = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const child of liveChildren) killGroup(child, 'SIGKILL');
}

export function liveChildCount(): number {
  return liveChildren.size;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Starts a command in its own process group with a hard timeout. The caller owns stdout
 * as a stream (for serving packs without buffering) and awaits `done`.
 */
export function spawnProcess(command: string, args: string[], options: RunOptions): SpawnedProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    stdio: [
      'pipe',
      options.stdoutFd ?? 'pipe',
      'pipe',
      ...(options.channel || options.onFd3 ? (['pipe'] as const) : []),
    ],
  });
  if (options.onFd3) (child.stdio[3] as Readable).on('data', options.onFd3);
  liveChildren.add(child);
  const label = `${command} ${subcommand(args)}`.trim();
  let stderrTail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
  });
  // EPIPE on stdin happens when the child exits before reading all input (e.g. upload-pack
  // rejecting a request); the exit code reports the real failure.
  child.stdin?.on('error', () => {});

  let reason: 'timeout' | 'abort' | undefined;
  const terminate = (why: 'timeout' | 'abort') => {
    reason ??= why;
    killGroup(child, 'SIGTERM');
    setTimeout(() => killGroup(child, 'SIGKILL'), KILL_GRACE_MS).unref();
  };
  const timer = setTimeout(() => terminate('timeout'), options.timeoutMs);
  timer.unref();
  const onAbort = () => terminate('abort');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();

  const done = new Promise<{ stderr: string }>((resolve, reject) => {
    child.once('error', (err) => {
      cleanup();
      reject(new GitMirrorError('PROCESS_FAILED', `${label}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, sig) => {
      cleanup();
      if (reason === 'timeout') {
        reject(new GitMirrorError('PROCESS_TIMEOUT', `${label} timed out after ${options.timeoutMs} ms`));
      } else if (reason === 'abort') {
        reject(new GitMirrorError('ABORTED', `${label} was cancelled`));
      } else if (code !== 0) {
        const detail = stderrTail.trim().split('\n').slice(-3).join(' | ');
        reject(
          new GitMirrorError(
            'PROCESS_FAILED',
            `${label} exited with ${code ?? sig}${detail ? `: ${detail}` : ''}`,
          ),
        );
      } else {
        resolve({ stderr: stderrTail });
      }
    });
  });
  done.catch(() => {});

  function cleanup() {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    liveChildren.delete(child);
  }

  feedStdin(child, options.stdin);
  const stdout = child.stdout ?? Readable.from([]);
  const channel = options.channel ? (child.stdio[3] as Socket) : undefined;
  channel?.on('error', () => {});
  return { child, stdout, stdin: child.stdin!, done, kill: () => terminate('abort'), channel };
}

/** The first argument that is neither an option nor an option's value: git's subcommand. */
export function subcommand(args: string[]): string {
  const index = args.findIndex(
    (a, i) => a !== '' && !a.startsWith('-') && args[i - 1] !== '-c' && args[i - 1] !== '--shallow-file',
  );
  return index < 0 ? '' : args[index]!;
}

function feedStdin(child: ChildProcess, input: RunOptions['stdin']): void {
  if (input === undefined) return;
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    child.stdin?.end(input);
  } else {
    input.on('error', () => child.stdin?.destroy());
    input.pipe(child.stdin!);
  }
}

/** Runs a command to completion and returns its (bounded) output. */
export async function runProcess(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  const proc = spawnProcess(command, args, options);
  if (options.stdin === undefined) proc.stdin.end();
  const max = options.maxStdoutBytes ?? 64 * 1024 * 1024;
  const chunks: Buffer[] = [];
  let size = 0;
  proc.stdout.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > max) {
      proc.kill();
      return;
    }
    chunks.push(chunk);
  });
  const overflow = () => new GitMirrorError('PROCESS_FAILED', `${command}: output exceeded ${max} bytes`);
  // Killing the child for too much output makes `done` reject as ABORTED; report the real cause.
  const { stderr } = await proc.done.catch((err: unknown) => {
    throw size > max ? overflow() : err;
  });
  if (size > max) throw overflow();
  return { stdout: Buffer.concat(chunks).toString('utf8'), stderr, exitCode: 0 };
}
