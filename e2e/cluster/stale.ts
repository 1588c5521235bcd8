import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sweepStaleNetworks } from './network.ts';
import { isAlive } from './processes.ts';

/**
 * Leftovers of runs that were SIGKILLed (and so could not tear down): their run dirs are
 * named `gitmirror-e2e-cluster-<pid>-*`, every control-plane process has that dir in its
 * argv, and their pods' processes live in network namespaces named after the same pid. Only
 * what belongs to a pid that no longer exists is touched, so concurrent runs are safe.
 */

export const RUN_DIR_PREFIX = 'gitmirror-e2e-cluster-';

export function sweepStale(): string[] {
  const removed = sweepStaleNetworks();
  const deadDirs: string[] = [];
  for (const entry of readdirSync(tmpdir())) {
    const owner = new RegExp(`^${RUN_DIR_PREFIX}(\\d+)-`).exec(entry)?.[1];
    if (owner && !isAlive(Number(owner))) deadDirs.push(join(tmpdir(), entry));
  }
  if (deadDirs.length === 0) return removed;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (deadDirs.some((dir) => cmdline.includes(dir))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
        removed.push(`process ${pid}`);
      } catch {
        // Gone meanwhile.
      }
    }
  }
  for (const dir of deadDirs) {
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}
