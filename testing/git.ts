import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';

/**
 * Git as tests and benchmarks run it: no user or system config (a developer's `insteadOf` or
 * credential helper must change neither a result nor a measurement), a fixed identity for the
 * commits fixtures make, and never a prompt.
 */
export const GIT_ENV: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: tmpdir(),
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_TERMINAL_PROMPT: '0',
};

export interface GitOptions {
  cwd?: string;
  /** Added to GIT_ENV (a credential helper's variables, GIT_PROTOCOL, ...). */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin (`fast-import` streams). */
  input?: string | Buffer;
  /** SIGKILL after this long [5 min]: a hung git fails its test instead of the whole run. */
  timeoutMs?: number;
}

/** Runs git to completion; resolves with stdout, rejects with the command and stderr's tail. */
export function git(args: string[], options: GitOptions = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 300_000;
  return new Promise((resolve, reject) => {
    const child = execFile(
      'git',
      args,
      {
        cwd: options.cwd,
        env: { ...GIT_ENV, ...options.env },
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 256 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const why = err.killed ? `timed out after ${timeoutMs} ms` : `failed (${err.code ?? err.signal})`;
        reject(new Error(`git ${args.join(' ')} ${why}: ${stderr.trim().slice(-2000)}`));
      },
    );
    // Closed even without input, so no git waits on a stdin nobody writes.
    child.stdin?.end(options.input);
  });
}
