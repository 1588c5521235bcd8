import { dataLost, type InvariantResult, judge, judgeOps } from './invariants.ts';
import type { SoakRecord } from './record.ts';
import { clock } from './schedule.ts';
import { percentile } from './stats.ts';

/**
 * The soak's report: the verdict on every invariant and the figures a reader wants from a
 * long run (operations per minute, latency by operation, failures by cause, each fault and
 * its recovery, lag, memory and fd trends), ending in one line: `data lost: none`, or what
 * was lost.
 */

export interface SoakReport {
  passed: boolean;
  results: InvariantResult[];
  lost: string[];
  markdown: string;
}

export function buildReport(record: SoakRecord): SoakReport {
  const results = judge(record);
  const lost = dataLost(results);
  const passed = results.every((r) => r.ok);
  return { passed, results, lost, markdown: markdown(record, results, lost) };
}

const s = (ms: number | undefined) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)} s`);
/** A table cell: git's and kubectl's multi-line messages on one line. */
const oneLine = (text: string) => text.replace(/\s+/g, ' ').replaceAll('|', '\\|');
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

function markdown(record: SoakRecord, results: InvariantResult[], lost: string[]): string {
  const { meta } = record;
  const lines: string[] = [];
  const minutes = (meta.loadEnd - meta.loadStart) / 60_000;
  lines.push(
    `Soak of ${minutes.toFixed(1)} min${meta.short ? ' (a short run)' : ''}, seed ${meta.seed}` +
      `${meta.sabotage.length ? `, sabotaged: ${meta.sabotage.join(', ')}` : ''}: **${results.every((r) => r.ok) ? 'passed' : 'FAILED'}**.`,
    '',
    machineLine(record),
    '',
    ...operationsTable(record),
    '',
    ...faultsTable(record),
    '',
    '| invariant | | |',
    '| --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.id} | ${r.ok ? 'held' : '**broken**'} | ${r.summary}${r.ok ? '' : `: ${oneLine(r.violations.slice(0, 3).join('; '))}${r.violations.length > 3 ? ` (+${r.violations.length - 3} more)` : ''}`} |`,
    ),
    '',
    failuresLine(record),
    '',
    `data lost: ${lost.length === 0 ? 'none' : lost.join('; ')}`,
  );
  return `${lines.join('\n')}\n`;
}

function machineLine(record: SoakRecord): string {
  const { meta } = record;
  const m = meta.machine;
  const phases = Object.entries(meta.phases)
    .map(([name, ms]) => `${name} ${s(ms)}`)
    .join(', ');
  const repos = meta.repos
    .map(
      (r) =>
        `${r.name} ${r.objects.toLocaleString('en-US')} objects (${mib(r.packBytes)})` +
        (r.lfs ? ` and ${r.lfs.objects} LFS objects (${mib(r.lfs.bytes)}) by the end` : ''),
    )
    .join(', ');
  const pushes = record.histories.reduce((n, h) => n + h.changes.length, 0);
  const forced = record.histories.reduce(
    (n, h) => n + h.changes.filter((c) => c.ref.endsWith('/soak-force')).length,
    0,
  );
  const deletions = record.histories.reduce((n, h) => n + h.changes.filter((c) => c.sha === null).length, 0);
  return [
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}, git ${m.git}; ` +
      `load average ${meta.loadAverage.start.join(' ')} at the start, ${meta.loadAverage.end?.join(' ') ?? '–'} at the end.`,
    `Phases: ${phases}.`,
    `Fleet of 3 from the chart; repositories ${repos}; ${pushes} pushes upstream (${forced} force-pushes, ${deletions} tag deletions).`,
    `Load: ${meta.rate} operations a minute, started at a fixed rate, plus one \`ls-remote\` a second; lag bound ${s(meta.lagBoundMs)} (ref check every ${s(meta.refCheckIntervalMs)} + the longest fetch, ≤ ${s(meta.fetchBoundMs)}).`,
  ].join('\n');
}

function operationsTable(record: SoakRecord): string[] {
  const groups = new Map<string, typeof record.ops>();
  for (const op of record.ops) {
    const key = op.kind === 'ls-remote' ? 'ls-remote' : `${op.kind} ${op.repo}`;
    groups.set(key, [...(groups.get(key) ?? []), op]);
  }
  const order = ['clone', 'checkout', 'partial', 'fetch', 'lfs', 'ls-remote'];
  const keys = [...groups.keys()].sort(
    (a, b) => order.indexOf(a.split(' ')[0]!) - order.indexOf(b.split(' ')[0]!) || a.localeCompare(b),
  );
  const rows = keys.map((key) => {
    const ops = groups.get(key)!;
    const ok = ops.filter((o) => o.ok).map((o) => o.end - o.start);
    return `| ${key} | ${ops.length} | ${s(percentile(ok, 50))} | ${s(percentile(ok, 99))} | ${ops.length - ok.length} |`;
  });
  const load = record.ops.filter((o) => o.kind !== 'ls-remote');
  const perMinute = bucketsPerMinute(
    record,
    load.map((o) => o.end).filter((_, i) => load[i]!.ok),
  );
  return [
    '| operation | count | p50 | p99 | failed |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows,
    `| **load, per minute** | ${(load.length / ((record.meta.loadEnd - record.meta.loadStart) / 60_000)).toFixed(1)} started | completed: min ${Math.min(...perMinute)}, median ${percentile(perMinute, 50) ?? 0} | | skipped ticks: ${record.skippedTicks.length} |`,
  ];
}

/** Completed operations in each whole minute of the load. */
function bucketsPerMinute(record: SoakRecord, ends: number[]): number[] {
  const minutes = Math.max(1, Math.floor((record.meta.loadEnd - record.meta.loadStart) / 60_000));
  const counts = new Array<number>(minutes).fill(0);
  for (const end of ends) {
    const m = Math.floor((end - record.meta.loadStart) / 60_000);
    if (m >= 0 && m < minutes) counts[m]!++;
  }
  return counts;
}

function faultsTable(record: SoakRecord): string[] {
  return [
    '| at | fault | | recovered in |',
    '| --- | --- | --- | ---: |',
    ...[...record.faults]
      .sort((a, b) => a.at - b.at)
      .map((f) => {
        const recovery =
          f.recoveredAt === undefined
            ? `**no**: ${oneLine(f.error ?? '')}`
            : s(f.recoveredAt - (f.endedAt ?? f.at));
        return `| ${clock(f.at - record.meta.loadStart)} | ${f.kind} | ${f.detail} | ${recovery} |`;
      }),
  ];
}

function failuresLine(record: SoakRecord): string {
  const { byClass, byCause } = judgeOps(record);
  const causes = Object.entries(byCause)
    .map(([cause, n]) => `${cause} ${n}`)
    .join(', ');
  return (
    `Failed operations: ${Object.values(byClass).reduce((a, b) => a + b, 0)} (${causes || 'none'}); ` +
    `in flight at a SIGKILL ${byClass['in flight at a SIGKILL']}, sent to a killed pod before its endpoint went ${byClass['sent before its endpoint went']}, unexplained ${byClass.unexplained}.`
  );
}
