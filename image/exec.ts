import { spawn } from 'node:child_process';

/**
 * Runs one build tool (buildah, mmdebstrap, npm, ...) to completion with a timeout. Its output
 * is captured; with `echo` set, stderr (where these tools report progress) is also passed
 * through, each line prefixed, so a long build shows what it is doing.
 */

export interface ExecOptions {
  timeoutMs: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Prefix for passing the tool's progress through to our stderr; unset: silent. */
  echo?: string;
}

export class ExecError extends Error {
  readonly code: number | null;
  readonly stderr: string;
  constructor(message: string, code: number | null, stderr: string) {
    super(message);
    this.code = code;
    this.stderr = stderr;
  }
}

export function exec(command: string, args: string[], options: ExecOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    let stderr = '';
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout.push(chunk);
      if (options.echo) pending = echoLines(options.echo, pending + chunk.toString());
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      stderr = (stderr + text).slice(-16_000);
      if (options.echo) pending = echoLines(options.echo, pending + text);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(Buffer.concat(stdout).toString());
      const why = signal ? `killed (${signal}${signal === 'SIGKILL' ? ', timed out?' : ''})` : `exit ${code}`;
      const tail = stderr.trim().split('\n').slice(-15).join('\n');
      reject(
        new ExecError(`${command} ${args.slice(0, 3).join(' ')} ... failed (${why}):\n${tail}`, code, stderr),
      );
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Writes the complete lines of `text` with a prefix; returns the unfinished rest. */
function echoLines(prefix: string, text: string): string {
  const lines = text.split('\n');
  const rest = lines.pop() ?? '';
  for (const line of lines) if (line.trim()) process.stderr.write(`${prefix}${line}\n`);
  return rest;
}
