import type { OpRecord, ResourceSample, SoakRecord } from './record.ts';
import { RefHistory } from './ref-history.ts';
import { type Point, percentile, slope, windowFloors } from './stats.ts';

/**
 * The soak's invariants, judged from a run's record alone. Each is a failure of the run
 * when broken; each has a sabotaged run that breaks it (sabotage.test.ts).
 */

export type InvariantId =
  | 'load-held'
  | 'ops-succeed'
  | 'clones-intact'
  | 'ready-implies-warm'
  | 'single-writer'
  | 'restores-not-clones'
  | 'lag'
  | 'no-growth'
  | 'data-budget'
  | 'faults-recovered'
  | 'mirrors-equal-upstream'
  | 'snapshots-whole'
  | 'nothing-left-over';

export interface InvariantResult {
  id: InvariantId;
  ok: boolean;
  /** One line for the report. */
  summary: string;
  violations: string[];
}

export function judge(record: SoakRecord): InvariantResult[] {
  return [
    judgeLoad(record),
    judgeOps(record).result,
    judgeClones(record),
    ...(['ready-implies-warm', 'single-writer', 'restores-not-clones'] as const).map((id) =>
      judgeLive(record, id),
    ),
    judgeLag(record).result,
    judgeGrowth(record).result,
    judgeBudget(record),
    judgeFaults(record),
    ...judgeFinal(record),
  ];
}

function result(id: InvariantId, summary: string, violations: string[]): InvariantResult {
  return { id, ok: violations.length === 0, summary, violations };
}

const t = (record: SoakRecord, at: number) => `${((at - record.meta.loadStart) / 1000).toFixed(1)} s`;

/** The load generator kept its fixed rate: no tick found the machine too far behind to start. */
export function judgeLoad(record: SoakRecord): InvariantResult {
  const { skippedTicks, meta } = record;
  const started = record.ops.filter((o) => o.kind !== 'ls-remote').length;
  const minutes = (meta.loadEnd - meta.loadStart) / 60_000;
  const violations = skippedTicks.length
    ? [
        `${skippedTicks.length} ticks skipped with too many operations in flight (first at ${t(record, skippedTicks[0]!)})`,
      ]
    : [];
  return result(
    'load-held',
    `${(started / minutes).toFixed(1)} ops/min started (target ${meta.rate})`,
    violations,
  );
}

export type FailureClass = 'in flight at a SIGKILL' | 'sent before its endpoint went' | 'unexplained';

/**
 * A failed operation is excused only when it was in flight on a pod at the moment that pod
 * was SIGKILLed, or started on it between the kill and the moment its endpoint left the
 * Service (what kube-proxy would also have sent there). Everything else is a violation.
 */
export function classifyFailure(op: OpRecord, record: SoakRecord): FailureClass {
  for (const kill of record.kills) {
    if (kill.pod !== op.pod) continue;
    if (op.start <= kill.at && op.end >= kill.at) return 'in flight at a SIGKILL';
    const gone = kill.endpointGoneAt ?? kill.at;
    if (op.start > kill.at && op.start <= gone) return 'sent before its endpoint went';
  }
  return 'unexplained';
}

export function judgeOps(record: SoakRecord): {
  result: InvariantResult;
  byClass: Record<FailureClass, number>;
  byCause: Record<string, number>;
} {
  const byClass: Record<FailureClass, number> = {
    'in flight at a SIGKILL': 0,
    'sent before its endpoint went': 0,
    unexplained: 0,
  };
  const byCause: Record<string, number> = {};
  const violations: string[] = [];
  for (const op of record.ops.filter((o) => !o.ok)) {
    const cls = classifyFailure(op, record);
    byClass[cls]++;
    const cause = failureCause(op.error ?? '');
    byCause[cause] = (byCause[cause] ?? 0) + 1;
    if (cls === 'unexplained')
      violations.push(
        `${op.kind} ${op.repo} via ${op.pod} at ${t(record, op.start)}: ${op.error ?? 'failed'}`,
      );
  }
  const total = record.ops.length;
  const summary =
    `${total - byClass.unexplained - byClass['in flight at a SIGKILL'] - byClass['sent before its endpoint went']} of ${total} succeeded; ` +
    `apart: ${byClass['in flight at a SIGKILL']} in flight at a SIGKILL, ${byClass['sent before its endpoint went']} sent to a killed pod before its endpoint went`;
  return { result: result('ops-succeed', summary, violations), byClass, byCause };
}

/** A short name for what went wrong, from git's stderr. */
export function failureCause(error: string): string {
  const e = error.toLowerCase();
  if (e.includes('timed out')) return 'timeout';
  if (e.includes('connection refused') || e.includes("couldn't connect") || e.includes('failed to connect'))
    return 'connection refused';
  if (e.includes('reset by peer') || e.includes('connection reset')) return 'connection reset';
  if (e.includes('empty reply')) return 'empty reply';
  if (/returned error: 5\d\d|http 5\d\d|\b50[0-9]\b/.test(e)) return 'HTTP 5xx';
  if (/returned error: 4\d\d|http 4\d\d/.test(e)) return 'HTTP 4xx';
  if (e.includes('early eof') || e.includes('unexpected disconnect') || e.includes('remote end hung up'))
    return 'cut off';
  return 'other';
}

/**
 * Every finished clone is fsck clean, every set of refs served is one upstream had, and every
 * LFS file checked out is the object its pointer names, one upstream holds.
 */
export function judgeClones(record: SoakRecord): InvariantResult {
  const violations: string[] = [];
  let checked = 0;
  let lfsFiles = 0;
  for (const op of record.ops) {
    if (!op.ok) continue;
    const at = `${op.kind} ${op.repo} via ${op.pod} at ${t(record, op.start)}`;
    if (op.fsck !== undefined) {
      checked++;
      if (op.fsck !== 'clean') violations.push(`${at}: fsck: ${op.fsck}`);
    }
    if (op.state === null)
      violations.push(`${at}: refs that upstream never had${op.refsDiff ? ` (${op.refsDiff})` : ''}`);
    if (op.refKnown === false) violations.push(`${at}: a commit upstream's branch never pointed at`);
    if (op.lfs) lfsFiles += op.lfs.objects;
    if (op.lfs?.problem) violations.push(`${at}: LFS: ${op.lfs.problem}`);
  }
  return result(
    'clones-intact',
    `${checked} repositories fsck'd, ${lfsFiles} LFS files checked, every ref set looked up`,
    violations,
  );
}

const LIVE_SUMMARY: Record<string, string> = {
  'ready-implies-warm': 'no Ready pod or ready endpoint with a mirror not warm (admin API and data on disk)',
  'single-writer': 'never two snapshot writers for one mirror',
  'restores-not-clones': 'every pod started after the first snapshots restored them (unless S3 was down)',
};

function judgeLive(record: SoakRecord, id: 'ready-implies-warm' | 'single-writer' | 'restores-not-clones') {
  const violations = record.live
    .filter((v) => v.invariant === id)
    .map((v) => `${t(record, v.at)}: ${v.detail}`);
  return result(
    id,
    `${LIVE_SUMMARY[id]}; ${record.samples.fleet} samples (${record.samples.fleetErrors} failed)`,
    violations,
  );
}

export interface LagFigures {
  /** Every probe's lag, ms. */
  all: number[];
  /** Probes not excused by an upstream outage or throttle. */
  judged: number[];
}

/**
 * How far behind upstream the refs a client got were when it asked: zero when they were
 * upstream's newest state, else the time since upstream moved past them. Probes whose
 * window overlaps an upstream outage or throttle (plus a grace of one bound after it) are
 * reported but not judged: the cache cannot see past an upstream it cannot reach.
 */
export function judgeLag(record: SoakRecord): { result: InvariantResult; figures: LagFigures } {
  const histories = new Map(record.histories.map((h) => [h.repo, RefHistory.fromJson(h)]));
  const bound = record.meta.lagBoundMs;
  const upstreamWindows = record.faults
    .filter((f) => f.kind === 'upstream-down' || f.kind === 'upstream-429')
    .map((f) => ({ from: f.at, to: (f.recoveredAt ?? f.endedAt ?? record.meta.loadEnd) + bound }));
  const figures: LagFigures = { all: [], judged: [] };
  const violations: string[] = [];
  for (const op of record.ops) {
    if (!op.ok || typeof op.state !== 'number') continue;
    const history = histories.get(op.repo);
    if (!history) continue;
    const newest = history.stateAt(op.start);
    const lag = op.state >= newest ? 0 : op.start - history.since(op.state + 1);
    figures.all.push(lag);
    const behindSince = op.state >= newest ? op.start : history.since(op.state + 1);
    if (upstreamWindows.some((w) => w.from <= op.start && w.to >= behindSince)) continue;
    figures.judged.push(lag);
    if (lag > bound)
      violations.push(
        `${op.kind} ${op.repo} via ${op.pod} at ${t(record, op.start)}: ${(lag / 1000).toFixed(1)} s behind`,
      );
  }
  const fmt = (v: number | undefined) => (v === undefined ? '-' : `${(v / 1000).toFixed(1)} s`);
  const j = figures.judged;
  const summary = `p50 ${fmt(percentile(j, 50))}, p99 ${fmt(percentile(j, 99))}, max ${fmt(percentile(j, 100))} over ${j.length} ref sets (bound ${fmt(bound)}); with upstream faults: max ${fmt(percentile(figures.all, 100))}`;
  return { result: result('lag', summary, violations), figures };
}

export interface Trend {
  role: 'sidecar' | 'operator';
  pod: string;
  pid: number;
  spanMs: number;
  rssSlopeMiBPerMin: number;
  rssGrowthMiB: number;
  fdSlopePerMin: number;
  fdGrowth: number;
}

/**
 * A process that started during the load (or an operator that took the Lease during it) is
 * judged only after it settled: its first three minutes (informers listing, V8 growing into
 * its heap, on a busy machine) are start-up, not a trend. One already running when the load
 * began went through its warm-up before it.
 */
const SETTLE_MS = 3 * 60_000;
const TREND_WINDOWS = 6;
const FD_GROWTH_LIMIT = 8;
const RSS_GROWTH_LIMIT_MIB = 24;
const RSS_GROWTH_LIMIT_SHARE = 0.15;

/**
 * Memory and open fds of every sidecar and operator process that lived through enough of the
 * run's second half: the trend of their floors (stats.ts `windowFloors`), extrapolated over
 * the time judged. A process that lived through less than a quarter of the half (or a minute)
 * after its first minute is not judged; the report says how many were.
 */
export function judgeGrowth(record: SoakRecord): { result: InvariantResult; trends: Trend[] } {
  const { loadStart, loadEnd } = record.meta;
  const half = loadStart + (loadEnd - loadStart) / 2;
  const minSpan = Math.max(60_000, (loadEnd - half) / 4);
  const series = new Map<string, ResourceSample[]>();
  for (const s of record.resources) {
    const key = `${s.role}/${s.pod}/${s.pid}`;
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  const trends: Trend[] = [];
  const violations: string[] = [];
  for (const samples of series.values()) {
    const first = samples[0]!;
    // A standby operator that takes the Lease starts its informers and caches then: a start too.
    const started =
      first.role === 'operator'
        ? Math.max(first.at, ...(record.leaders ?? []).filter((l) => l.pod === first.pod).map((l) => l.at))
        : first.at;
    const from = Math.max(half, started > loadStart ? started + SETTLE_MS : 0);
    const judged = samples.filter((s) => s.at >= from && s.at <= loadEnd);
    if (judged.length < TREND_WINDOWS) continue;
    const spanMs = judged.at(-1)!.at - judged[0]!.at;
    if (spanMs < minSpan) continue;
    const per = (pick: (s: ResourceSample) => number): Point[] =>
      windowFloors(
        judged.map((s) => ({ t: s.at, v: pick(s) })),
        TREND_WINDOWS,
      );
    const rssSlope = slope(per((s) => s.rssBytes / 2 ** 20)) * 60_000;
    const fdSlope = slope(per((s) => s.fds)) * 60_000;
    const trend: Trend = {
      role: first.role,
      pod: first.pod,
      pid: first.pid,
      spanMs,
      rssSlopeMiBPerMin: rssSlope,
      rssGrowthMiB: (rssSlope * spanMs) / 60_000,
      fdSlopePerMin: fdSlope,
      fdGrowth: (fdSlope * spanMs) / 60_000,
    };
    trends.push(trend);
    const name = `${trend.role} ${trend.pod} (pid ${trend.pid})`;
    const rssFloor = Math.min(...judged.map((s) => s.rssBytes)) / 2 ** 20;
    if (trend.fdGrowth > FD_GROWTH_LIMIT)
      violations.push(
        `${name}: open fds grow ${fdSlope.toFixed(1)}/min (${trend.fdGrowth.toFixed(0)} over ${(spanMs / 60_000).toFixed(1)} min)`,
      );
    if (trend.rssGrowthMiB > Math.max(RSS_GROWTH_LIMIT_MIB, RSS_GROWTH_LIMIT_SHARE * rssFloor))
      violations.push(
        `${name}: memory grows ${rssSlope.toFixed(1)} MiB/min (${trend.rssGrowthMiB.toFixed(0)} MiB over ${(spanMs / 60_000).toFixed(1)} min)`,
      );
  }
  const roleMax = (role: Trend['role'], pick: (t: Trend) => number) => {
    const values = trends.filter((x) => x.role === role).map(pick);
    return values.length ? Math.max(...values) : undefined;
  };
  const f = (v: number | undefined, unit: string) => (v === undefined ? 'n/a' : `${v.toFixed(2)} ${unit}`);
  const summary =
    `sidecars: memory ${f(
      roleMax('sidecar', (x) => x.rssSlopeMiBPerMin),
      'MiB/min',
    )}, fds ${f(
      roleMax('sidecar', (x) => x.fdSlopePerMin),
      '/min',
    )}; ` +
    `operators: memory ${f(
      roleMax('operator', (x) => x.rssSlopeMiBPerMin),
      'MiB/min',
    )}, fds ${f(
      roleMax('operator', (x) => x.fdSlopePerMin),
      '/min',
    )} ` +
    `(steepest of ${trends.length} processes judged over the second half` +
    `${trends.length === 0 && record.meta.short ? '; none lived long enough in this short run' : ''})`;
  // A short run's early rollout or takeover can leave no process old enough: a fact of its
  // length, said in the summary. In a full run it means the judge saw nothing, which fails.
  if (trends.length === 0 && !record.meta.short)
    violations.push('no process lived long enough in the second half to be judged');
  return { result: result('no-growth', summary, violations), trends };
}

export function judgeBudget(record: SoakRecord): InvariantResult {
  const budget = record.meta.dataBudgetBytes;
  const over = record.disk.filter((d) => d.bytes > budget);
  const max = Math.max(0, ...record.disk.map((d) => d.bytes));
  const violations = [...new Set(over.map((d) => d.pod))].map((pod) => {
    const worst = Math.max(...over.filter((d) => d.pod === pod).map((d) => d.bytes));
    return `${pod}: data dir ${mib(worst)} over its budget of ${mib(budget)}`;
  });
  return result('data-budget', `largest data dir ${mib(max)} of ${mib(budget)}`, violations);
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

export function judgeFaults(record: SoakRecord): InvariantResult {
  const violations = record.faults
    .filter((f) => f.recoveredAt === undefined)
    .map((f) => `${f.kind} at ${t(record, f.at)} (${f.detail}): ${f.error ?? 'did not recover'}`);
  const planned = record.plan.faults.length;
  return result(
    'faults-recovered',
    `${record.faults.length} of ${planned} planned faults injected, ${record.faults.filter((f) => f.recoveredAt !== undefined).length} recovered`,
    [
      ...violations,
      ...(record.faults.length < planned
        ? [`${planned - record.faults.length} planned faults not injected`]
        : []),
    ],
  );
}

export function judgeFinal(record: SoakRecord): InvariantResult[] {
  const final = record.final;
  const missing = ['the final checks did not run'];
  return [
    result(
      'mirrors-equal-upstream',
      'after the run every mirror on every pod equals upstream',
      final ? final.mirrorsEqualUpstream : missing,
    ),
    result(
      'snapshots-whole',
      'every latest.json names a whole archive',
      final ? final.snapshotsWhole : missing,
    ),
    result(
      'nothing-left-over',
      'no temp dir, multipart upload or orphaned process left',
      final ? [...final.leftovers, ...final.multipartUploads, ...final.orphanedProcesses] : missing,
    ),
  ];
}

/** What was lost, for the report's last line: data that a client or the store no longer has. */
export function dataLost(results: InvariantResult[]): string[] {
  const lossy: InvariantId[] = ['clones-intact', 'mirrors-equal-upstream', 'snapshots-whole'];
  return results.filter((r) => lossy.includes(r.id)).flatMap((r) => r.violations);
}
