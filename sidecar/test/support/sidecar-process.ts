import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface SidecarProcess {
  child: ChildProcess;
  gitUrl: string;
  adminUrl: string;
  /** Everything the process wrote to stdout and stderr so far (its JSON logs). */
  output(): string;
  /** Resolves with the exit code or signal once the process is gone. */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

/**
 * The sidecar as a separate process, exactly as `npm start` runs it: for tests that signal
 * or kill it, or inspect its argv and output.
 */
export async function startSidecarProcess(env: Record<string, string>): Promise<SidecarProcess> {
  const [gitPort, adminPort] = [await freePort(), await freePort()];
  let output = '';
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      GITMIRROR_LISTEN: `127.0.0.1:${gitPort}`,
      GITMIRROR_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      GITMIRROR_SHUTDOWN_TIMEOUT: '3s',
      GITMIRROR_LOG_LEVEL: 'debug',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)),
  );
  const gitUrl = `http://127.0.0.1:${gitPort}`;
  await waitForHealth(gitUrl, exited, () => output);
  return {
    child,
    gitUrl,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    output: () => output,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

async function waitForHealth(url: string, exited: Promise<unknown>, output: () => string): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && !gone) {
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sidecar did not become healthy:\n${output()}`);
}
