import type { Readable } from 'node:stream';
import {
  type RunResult,
  runProcess,
  type SpawnedProcess,
  spawnProcess,
  subcommand,
} from '../process/child-process.ts';
import { CurlTraceReader } from '../upstream/curl-trace.ts';
import { throttledError, throttleOf } from '../upstream/throttle.ts';
import type { Credentials } from './credentials.ts';
import { type GitVersion, parseGitVersion } from './git-version.ts';

export interface GitInvocation {
  args: string[];
  cwd?: string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Upstream credentials for this one process; handed over through its environment. */
  credentials?: Credentials;
  /**
   * HTTP headers git sends with every request (`http.extraHeader`), through this process's
   * environment like credentials: a fleet peer's bearer token never reaches argv.
   */
  httpHeaders?: string[];
  /** Extra variables, e.g. GIT_PROTOCOL for upload-pack. */
  env?: Record<string, string>;
  stdin?: string | Buffer | Readable;
  maxStdoutBytes?: number;
  /** Write stdout straight to this open file descriptor (see `RunOptions.stdoutFd`). */
  stdoutFd?: number;
  /** A socket pair on the child's fd 3 (see `RunOptions.channel`). */
  channel?: boolean;
  /**
   * The upstream host this command talks to over HTTP. Its responses' status lines and
   * throttling headers are traced (GIT_TRACE_CURL, headers only, on a pipe), so a command that
   * fails because upstream throttled it fails as UPSTREAM_THROTTLED with upstream's wait.
   */
  upstreamHost?: string;
  /** With `upstreamHost`: called when git sends its first request (ref checks are spaced by it). */
  onRequestSent?: () => void;
}

/** The seam between the sidecar and git: tests can wrap it to count or fail invocations. */
export interface GitRunner {
  run(invocation: GitInvocation): Promise<RunResult>;
  spawn(invocation: GitInvocation): SpawnedProcess;
  /** The git it runs (asked once, then remembered). */
  version(): Promise<GitVersion>;
}

/**
 * The credential helper is a fixed string that reads the secret from this process's
 * environment, so the secret never appears in argv, config files or logs.
 */
const CREDENTIAL_HELPER =
  '!f() { test "$1" = get || exit 0; printf "username=%s\\npassword=%s\\n" "$GITMIRROR_GIT_USERNAME" "$GITMIRROR_GIT_PASSWORD"; }; f';

/**
 * Builds a minimal environment: no user or system git config (a host's own `insteadOf`
 * rules pointing at this cache would make the mirror fetch from itself), no prompts.
 */
export function gitEnvironment(
  invocation: Pick<GitInvocation, 'credentials' | 'env' | 'httpHeaders'>,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    LANG: 'C',
    LC_ALL: 'C',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_ASKPASS: '/bin/false',
    GIT_CONFIG_COUNT: '1',
    // An empty helper resets any inherited list.
    GIT_CONFIG_KEY_0: 'credential.helper',
    GIT_CONFIG_VALUE_0: '',
    ...invocation.env,
  };
  for (const proxyVar of ['HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy']) {
    if (process.env[proxyVar] !== undefined) env[proxyVar] = process.env[proxyVar];
  }
  if (invocation.credentials) {
    env.GIT_CONFIG_COUNT = '2';
    env.GIT_CONFIG_KEY_1 = 'credential.helper';
    env.GIT_CONFIG_VALUE_1 = CREDENTIAL_HELPER;
    env.GITMIRROR_GIT_USERNAME = invocation.credentials.username;
    env.GITMIRROR_GIT_PASSWORD = invocation.credentials.password;
  }
  let count = Number(env.GIT_CONFIG_COUNT);
  for (const header of invocation.httpHeaders ?? []) {
    env[`GIT_CONFIG_KEY_${count}`] = 'http.extraHeader';
    env[`GIT_CONFIG_VALUE_${count}`] = header;
    count++;
  }
  env.GIT_CONFIG_COUNT = String(count);
  return env;
}

export class ProcessGitRunner implements GitRunner {
  private readonly gitBinary: string;
  private detected: Promise<GitVersion> | undefined;

  constructor(gitBinary = 'git') {
    this.gitBinary = gitBinary;
  }

  async run(invocation: GitInvocation): Promise<RunResult> {
    const { upstreamHost } = invocation;
    if (!upstreamHost) return runProcess(this.gitBinary, invocation.args, this.options(invocation));
    const trace = new CurlTraceReader({ onFirstRequest: invocation.onRequestSent });
    // Only here is fd 3 read: a spawned command (or one with the hook's channel on fd 3) never traces.
    const options = this.options(invocation);
    try {
      return await runProcess(this.gitBinary, invocation.args, {
        ...options,
        env: { ...options.env, ...HTTP_TRACE_ENV },
        onFd3: (chunk) => trace.feed(chunk),
      });
    } catch (err) {
      const answer = trace.lastResponse();
      const throttle = answer && throttleOf(answer, Date.now());
      if (throttle) throw throttledError(`git ${subcommand(invocation.args)}`, upstreamHost, throttle);
      throw err;
    }
  }

  spawn(invocation: GitInvocation): SpawnedProcess {
    return spawnProcess(this.gitBinary, invocation.args, this.options(invocation));
  }

  version(): Promise<GitVersion> {
    this.detected ??= this.run({ args: ['version'], timeoutMs: 30_000 }).then((r) =>
      parseGitVersion(r.stdout),
    );
    // A failure is not remembered: the next caller asks again.
    this.detected.catch(() => {
      this.detected = undefined;
    });
    return this.detected;
  }

  private options(invocation: GitInvocation) {
    return {
      // Git looks for a repository from its working directory even for `config --file` or
      // `ls-remote`; the sidecar's own (an image's WORKDIR, a checkout, a worktree whose .git
      // points elsewhere) must never be it.
      cwd: invocation.cwd ?? '/',
      env: gitEnvironment(invocation),
      timeoutMs: invocation.timeoutMs,
      signal: invocation.signal,
      stdin: invocation.stdin,
      maxStdoutBytes: invocation.maxStdoutBytes,
      stdoutFd: invocation.stdoutFd,
      channel: invocation.channel,
    };
  }
}

/**
 * Headers only (no pack data), on file descriptor 3, which git's HTTP helper inherits; git
 * redacts Authorization and cookies in it. The reader keeps status lines and throttling headers.
 */
const HTTP_TRACE_ENV = { GIT_TRACE_CURL: '3', GIT_TRACE_CURL_NO_DATA: '1', GIT_TRACE_REDACT: '1' };
