import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { MirrorList, MirrorStatus } from '../core/admin-api.ts';
import { metricValue } from '../testing/metrics.ts';
import { type SidecarProcess, spawnSidecarProcess } from '../testing/sidecar-process.ts';
import { waitFor } from '../testing/wait.ts';

const WARM_SCRIPT = fileURLToPath(new URL('../scripts/warm-compile-cache.ts', import.meta.url));
const run = promisify(execFile);
/** Fine enough that polling adds little to a restore of a second or two, cheap for the sidecar. */
const POLL_MS = 20;
/** USER_HZ: the unit of /proc/PID/stat times on Linux (100 on every mainstream architecture). */
const CLOCK_TICKS = 100;

/** The shared sidecar process (testing/sidecar-process.ts) with what the benchmark reads of it. */
export interface BenchSidecar extends SidecarProcess {
  /** Resolves with seconds from spawn to the first `/readyz` 200. */
  waitReady(timeoutMs: number): Promise<number>;
  mirrors(): Promise<MirrorStatus[]>;
  metrics(): Promise<string>;
  /** Peak resident set of the sidecar's own process (not its git children), MiB. */
  peakRssMiB(): Promise<number>;
  /** Resident set size now (`VmRSS`). */
  rssMiB(): Promise<number>;
  /** Restart the peak-RSS count (Linux `clear_refs` 5), so a phase measures only itself. */
  resetPeakRss(): Promise<boolean>;
  /**
   * CPU seconds (user + system) of the sidecar and of every child it has reaped, with their
   * own reaped children: upload-pack, the pack cache's hook and generations, cat-file.
   */
  cpuSeconds(): Promise<number>;
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
  const sidecar = await spawnSidecarProcess({
    env: { GITMIRROR_LOG_LEVEL: 'info', NODE_COMPILE_CACHE: launch.compileCache, ...launch.env },
    nodeArgs: launch.nodeArgs,
    logFile: launch.logFile,
  });
  const status = `/proc/${sidecar.child.pid}/status`;
  return {
    ...sidecar,
    waitReady: (timeoutMs) => sidecar.waitUntilOk('/readyz', { timeoutMs, intervalMs: POLL_MS }),
    async mirrors() {
      const res = await fetch(`${sidecar.adminUrl}/v1/mirrors`);
      return ((await res.json()) as MirrorList).mirrors;
    },
    async metrics() {
      return (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    },
    async peakRssMiB() {
      const kib = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile(status, 'utf8'))?.[1];
      return Number(kib) / 1024;
    },
    async rssMiB() {
      const kib = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(status, 'utf8'))?.[1];
      return Number(kib) / 1024;
    },
    async resetPeakRss() {
      return writeFile(`/proc/${sidecar.child.pid}/clear_refs`, '5').then(
        () => true,
        () => false,
      );
    },
    async cpuSeconds() {
      // Fields 14-17 of /proc/PID/stat: utime, stime, cutime, cstime, in clock ticks.
      const fields = (await readFile(`/proc/${sidecar.child.pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
      return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) / CLOCK_TICKS;
    },
  };
}

/** Waits until a metric reaches at least `min` (e.g. a job count), polling the admin port. */
export async function waitForMetric(
  sidecar: BenchSidecar,
  name: string,
  labels: Record<string, string>,
  min: number,
  timeoutMs: number,
): Promise<void> {
  await waitFor(
    `${name}${JSON.stringify(labels)} to reach ${min}`,
    async () => (metricValue(await sidecar.metrics(), name, labels) ?? 0) >= min,
    { timeoutMs, intervalMs: 250 },
  );
}
