import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.ts';
import { abandonWait, type WaitOptions, waitFor } from './wait.ts';

const MAIN = fileURLToPath(new URL('../sidecar/src/main.ts', import.meta.url));
/**
 * The node flags the image, the chart and `npm start` run the sidecar with (a test keeps them
 * equal), so tests and the benchmark run what users run. A 1 MiB semi-space keeps V8's young
 * generation from growing to 16 MiB per half under a stream of requests: about 8 MiB less
 * resident memory idle and 10 MiB less serving 16 clients, and no more CPU (the objects a
 * request leaves behind are small; its buffers live outside the heap).
 */
export const SIDECAR_NODE_FLAGS = ['--max-semi-space-size=1'];
/** A SIGTERMed sidecar that is still running after this long is SIGKILLed. */
const STOP_GRACE_MS = 30_000;

export interface SidecarProcessOptions {
  /** Variables on top of PATH, HOME and the two listen addresses (loopback, free ports). */
  env: Record<string, string>;
  /** Node flags after SIDECAR_NODE_FLAGS and before the entry point, e.g. `--cpu-prof --cpu-prof-dir=DIR`. */
  nodeArgs?: string[];
  /** Appends the output (JSON logs) to this file instead of keeping it in memory. */
  logFile?: string;
}

/**
 * The sidecar as its own process, exactly as `npm start` runs it: for tests that signal or
 * kill it or read its argv and output, and for benchmarks that measure its own RSS and event
 * loop rather than the driver's.
 */
export interface SidecarProcess {
  child: ChildProcess;
  gitUrl: string;
  adminUrl: string;
  /** `performance.now()` just before the spawn. */
  spawnedAt: number;
  /** Everything it wrote to stdout and stderr so far; empty with a `logFile`. */
  output(): string;
  /** The exit code, or the signal's name, once the process is gone. */
  exited: Promise<number | string>;
  /**
   * Waits until `path` (`/healthz`, `/readyz`) answers 200, failing at once if the process
   * exits; resolves with the seconds from spawn to that answer.
   */
  waitUntilOk(path: string, options?: WaitOptions): Promise<number>;
  /** Sends `signal` [SIGTERM] (SIGKILL 30 s later); resolves like `exited`. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export async function spawnSidecarProcess(options: SidecarProcessOptions): Promise<SidecarProcess> {
  const [gitPort, adminPort] = [await freePort(), await freePort()];
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, ...(options.nodeArgs ?? []), MAIN], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      GITMIRROR_LISTEN: `127.0.0.1:${gitPort}`,
      GITMIRROR_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const output = captureOutput(child, exited, options.logFile);
  const gitUrl = `http://127.0.0.1:${gitPort}`;
  const running = () => child.exitCode === null && child.signalCode === null;
  const failure = () => (options.logFile ? `see ${options.logFile}` : output());
  return {
    child,
    gitUrl,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    spawnedAt,
    output,
    exited,
    async waitUntilOk(path, wait = {}) {
      await waitFor(
        `the sidecar's ${path}`,
        async () => {
          if (!running()) abandonWait(`the sidecar exited before ${path} answered 200:\n${failure()}`);
          return (await fetch(`${gitUrl}${path}`)).status === 200;
        },
        wait,
      );
      return (performance.now() - spawnedAt) / 1000;
    },
    async stop(signal = 'SIGTERM') {
      if (running()) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
}

/** A sidecar process for tests: debug logs, a short shutdown, healthy before it resolves. */
export async function startSidecarProcess(env: Record<string, string>): Promise<SidecarProcess> {
  const sidecar = await spawnSidecarProcess({
    env: { GITMIRROR_SHUTDOWN_TIMEOUT: '3s', GITMIRROR_LOG_LEVEL: 'debug', ...env },
  });
  try {
    await sidecar.waitUntilOk('/healthz', { intervalMs: 100 });
  } catch (err) {
    await sidecar.stop('SIGKILL');
    throw err;
  }
  return sidecar;
}

function captureOutput(child: ChildProcess, exited: Promise<unknown>, logFile?: string): () => string {
  if (logFile) {
    const log = createWriteStream(logFile, { flags: 'a' });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    void exited.then(() => log.end());
    return () => '';
  }
  let text = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (text += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (text += d));
  return () => text;
}
