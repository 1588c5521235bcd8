import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/**
 * Long-running helper processes of the suite (etcd, kube-apiserver, pods' containers, ...).
 * Each runs in its own process group with its output in a log file, so it can be stopped
 * together with anything it started, and a failing test can show what the process said.
 * Every live group is SIGKILLed when this Node process exits, whatever the reason.
 */

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly exited: Promise<ExitInfo>;
  running(): boolean;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<ExitInfo>;
  /** The last `bytes` of its log. */
  logTail(bytes?: number): string;
}

const liveGroups = new Set<number>();
process.once('exit', () => {
  for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
});

export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // Already gone.
  }
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; logFile: string; cwd?: string },
): ManagedProcess {
  const fd = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      env: options.env,
      cwd: options.cwd,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name}: could not start ${command}`);
  liveGroups.add(pid);
  let done = false;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      // Whatever the leader left behind in its group goes with it.
      killGroup(pid, 'SIGKILL');
      liveGroups.delete(pid);
      resolve({ code, signal });
    });
  });
  const logTail = (bytes = 4000) => tailOf(options.logFile, bytes);
  const stop = async (graceMs = 10_000) => {
    if (!done) {
      killGroup(pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
      const info = await exited;
      clearTimeout(timer);
      return info;
    }
    return exited;
  };
  return { name, pid, logFile: options.logFile, exited, running: () => !done, stop, logTail };
}

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function tailOf(file: string, bytes: number): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? text.slice(-bytes) : text;
  } catch {
    return '';
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | string | null;
  constructor(message: string, result: RunResult & { code: number | string | null }) {
    super(message);
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.code = result.code;
  }
}

/** Runs a short command to completion; rejects with its stderr when it fails or times out. */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      {
        env: options.env ?? process.env,
        cwd: options.cwd,
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const code = (err as NodeJS.ErrnoException & { code?: number | string }).code ?? null;
        const why = err.killed ? `timed out after ${timeoutMs} ms` : `failed (${code})`;
        reject(
          new CommandError(`${command} ${args.join(' ')} ${why}: ${stderr.trim() || stdout.trim()}`, {
            stdout,
            stderr,
            code,
          }),
        );
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
