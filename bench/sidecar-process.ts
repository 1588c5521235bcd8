import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { MirrorList, MirrorStatus } from '../core/admin-api.ts';
import { freePort } from '../sidecar/test/support/sidecar-process.ts';
import { sleep } from './util.ts';

const MAIN = fileURLToPath(new URL('../sidecar/src/main.ts', import.meta.url));
const WARM_SCRIPT = fileURLToPath(new URL('../scripts/warm-compile-cache.ts', import.meta.url));
const run = promisify(execFile);
/** Fine enough that polling adds little to a restore of a second or two, cheap for the sidecar. */
const POLL_MS = 20;

/**
 * The sidecar as its own process, exactly as `npm start` runs it, so its RSS and event
 * loop are its own and not the benchmark driver's.
 */
export interface BenchSidecar {
  child: ChildProcess;
  gitUrl: string;
  adminUrl: string;
  /** `performance.now()` just before the spawn. */
  spawnedAt: number;
  /** Resolves with seconds from spawn to the first `/readyz` 200. */
  waitReady(timeoutMs: number): Promise<number>;
  mirrors(): Promise<MirrorStatus[]>;
  metrics(): Promise<string>;
  /** Peak resident set of the sidecar's own process (not its git children), MiB. */
  peakRssMiB(): Promise<number>;
  /** Restart the peak-RSS count (Linux `clear_refs` 5), so a phase measures only itself. */
  resetPeakRss(): Promise<boolean>;
  stop(): Promise<void>;
}

export interface SidecarLaunch {
  env: Record<string, string>;
  /** NODE_COMPILE_CACHE, filled by `warmCompileCache`. */
  compileCache: string;
  logFile: string;
  /** Extra node flags, e.g. `--cpu-prof --cpu-prof-dir=DIR` for a profile of this process. */
  nodeArgs?: string[];
}

/** Fills `dir` the way the image build does (`scripts/warm-compile-cache.ts`). */
export async function warmCompileCache(dir: string): Promise<string> {
  await run(process.execPath, [WARM_SCRIPT], {
    env: { ...process.env, NODE_COMPILE_CACHE: dir },
    timeout: 120_000,
  });
  return dir;
}

export async function spawnSidecar(launch: SidecarLaunch): Promise<BenchSidecar> {
  const [gitPort, adminPort] = [await freePort(), await freePort()];
  const log = createWriteStream(launch.logFile, { flags: 'a' });
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [...(launch.nodeArgs ?? []), MAIN], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      GITMIRROR_LISTEN: `127.0.0.1:${gitPort}`,
      GITMIRROR_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      GITMIRROR_LOG_LEVEL: 'info',
      NODE_COMPILE_CACHE: launch.compileCache,
      ...launch.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => log.end());
  const gitUrl = `http://127.0.0.1:${gitPort}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const status = `/proc/${child.pid}/status`;
  return {
    child,
    gitUrl,
    adminUrl,
    spawnedAt,
    async waitReady(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`sidecar exited before it was ready; see ${launch.logFile}`);
        const ok = await fetch(`${gitUrl}/readyz`).then(
          (r) => r.status === 200,
          () => false,
        );
        if (ok) return (performance.now() - spawnedAt) / 1000;
        await sleep(POLL_MS);
      }
      throw new Error(`sidecar not ready within ${timeoutMs} ms; see ${launch.logFile}`);
    },
    async mirrors() {
      const res = await fetch(`${adminUrl}/v1/mirrors`);
      return ((await res.json()) as MirrorList).mirrors;
    },
    async metrics() {
      return (await fetch(`${adminUrl}/metrics`)).text();
    },
    async peakRssMiB() {
      const kib = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile(status, 'utf8'))?.[1];
      return Number(kib) / 1024;
    },
    async resetPeakRss() {
      return writeFile(`/proc/${child.pid}/clear_refs`, '5').then(
        () => true,
        () => false,
      );
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/** The value of one sample in Prometheus text format, `name{labels} value`. */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (!wanted.every((w) => rest.includes(w))) continue;
    return Number(rest.slice(rest.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** Waits until a metric reaches at least `min` (e.g. a job count), polling the admin port. */
export async function waitForMetric(
  sidecar: BenchSidecar,
  name: string,
  labels: Record<string, string>,
  min: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((metricValue(await sidecar.metrics(), name, labels) ?? 0) >= min) return;
    await sleep(250);
  }
  throw new Error(`${name}${JSON.stringify(labels)} did not reach ${min} within ${timeoutMs} ms`);
}
