import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/**
 * A text summary of a V8 `.cpuprofile` (what `npm run bench -- --profile DIR` writes): the
 * functions with the most self time, and the longest stretches in which the thread never went
 * idle, each with the functions that filled it. On the main thread such a stretch is a
 * stall of the event loop for everything else the process serves, so this is the view that
 * explains an event-loop figure; the summary is small enough to commit where the profile is not.
 *
 *   node bench/profile-summary.ts prof/writer/CPU.*.cpuprofile [--min-ms 8] [--top 15]
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface BusyStretch {
  startMs: number;
  ms: number;
  /** Self time by function, ms. */
  self: Map<string, number>;
}

export interface ProfileSummary {
  seconds: number;
  busySeconds: number;
  topSelf: [string, number][];
  stretches: BusyStretch[];
}

/** What V8 records when the thread runs no JavaScript and no GC: waiting, or native bookkeeping. */
const IDLE = new Set(['(idle)', '(program)', '(root)']);

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url ? url.split('/').slice(-2).join('/') : '';
  return `${functionName || '(anonymous)'}${file ? ` ${file}:${lineNumber + 1}` : ''}`;
}

export function summarizeProfile(
  profile: CpuProfile,
  options: { minMs: number; top: number },
): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const stretches: BusyStretch[] = [];
  const totals = new Map<string, number>();
  let current: BusyStretch | undefined;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    // A sample stands for the time until the next one.
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(profile.samples[i]!)!;
    if (IDLE.has(node.callFrame.functionName)) {
      if (current) stretches.push(current);
      current = undefined;
      continue;
    }
    current ??= { startMs: (t - profile.startTime) / 1000, ms: 0, self: new Map() };
    current.ms += ms;
    const name = frameName(node);
    current.self.set(name, (current.self.get(name) ?? 0) + ms);
    totals.set(name, (totals.get(name) ?? 0) + ms);
  }
  if (current) stretches.push(current);
  const busyMs = stretches.reduce((sum, s) => sum + s.ms, 0);
  return {
    seconds: (profile.endTime - profile.startTime) / 1e6,
    busySeconds: busyMs / 1000,
    topSelf: [...totals].sort((a, b) => b[1] - a[1]).slice(0, options.top),
    stretches: stretches
      .filter((s) => s.ms >= options.minMs)
      .sort((a, b) => b.ms - a.ms)
      .slice(0, options.top),
  };
}

export function formatSummary(summary: ProfileSummary): string {
  const top = (self: Map<string, number>) =>
    [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([name, ms]) => `${ms.toFixed(1)} ms ${name}`)
      .join('; ');
  return [
    `${summary.seconds.toFixed(1)} s profiled, ${summary.busySeconds.toFixed(2)} s busy`,
    'self time:',
    ...summary.topSelf.map(([name, ms]) => `  ${ms.toFixed(0).padStart(6)} ms  ${name}`),
    'longest busy stretches:',
    ...summary.stretches.map(
      (s) => `  ${s.ms.toFixed(1).padStart(6)} ms at ${(s.startMs / 1000).toFixed(2)} s: ${top(s.self)}`,
    ),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: number) => {
    const at = args.indexOf(name);
    if (at < 0) return fallback;
    const [, value] = args.splice(at, 2);
    return Number(value);
  };
  const minMs = option('--min-ms', 8);
  const top = option('--top', 15);
  if (args.length === 0) {
    console.error('usage: node bench/profile-summary.ts FILE.cpuprofile... [--min-ms 8] [--top 15]');
    process.exit(2);
  }
  for (const file of args) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    console.log(`== ${file}\n${formatSummary(summarizeProfile(profile, { minMs, top }))}\n`);
  }
}
