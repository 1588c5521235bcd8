import { spawn } from 'node:child_process';
import { GIT_ENV } from '../testing/git.ts';

/**
 * Runs a shell pipeline (`zstd -dc X | tar -x`), failing if any stage fails: the raw CLI
 * baselines are measured exactly as an operator would type them.
 */
export function sh(script: string, env: NodeJS.ProcessEnv = GIT_ENV): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${script} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
  });
}

/** Single-quoted for bash. */
export function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await fn();
  return [value, (performance.now() - start) / 1000];
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile: with 16 samples p99 is the slowest one, never an interpolation. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Round to a precision that keeps the JSON readable without hiding differences. */
export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Runs `measure` for each variant in turn, `runs` times, alternating the order of the
 * variants every round so neither always runs on a cache the other just warmed.
 */
export async function alternate<K extends string>(
  runs: number,
  variants: Record<K, () => Promise<number>>,
  log: (line: string) => void,
): Promise<Record<K, number[]>> {
  const names = Object.keys(variants) as K[];
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let round = 0; round < runs; round++) {
    const order = round % 2 ? [...names].reverse() : names;
    for (const name of order) {
      const seconds = await variants[name]();
      samples[name].push(seconds);
      log(`  ${name} run ${round + 1}/${runs}: ${seconds.toFixed(2)} s`);
    }
  }
  return samples;
}
