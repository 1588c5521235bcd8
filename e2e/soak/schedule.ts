import { prng } from '../../sidecar/demo/synthetic-repo.ts';

/**
 * The chaos schedule: which fault happens when, drawn from a printed seed so a run can be
 * replayed. Pure: the same seed and length always give the same plan.
 *
 * The run is cut into cycles of about 15 minutes (a short run is one cycle); every kind of
 * fault happens once per cycle at a random moment, so a 60-minute run injects each kind
 * three times. Faults may overlap (a rollout during an S3 outage is what users live
 * through), except the two upstream faults, which share one proxy. The first moments of
 * the run are quiet (a baseline of the load) and so is its tail (the fleet settles before
 * the final checks).
 */

export const FAULT_KINDS = [
  'kill-fleet-pod',
  'kill-operator-leader',
  'rollout',
  'scale',
  's3-down',
  'upstream-down',
  'upstream-429',
  'apiserver-restart',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export interface PlannedFault {
  kind: FaultKind;
  /** From the start of the load. */
  atMs: number;
  /** How long the fault lasts: the outage windows, and how long the fleet stays scaled up. */
  durationMs: number;
  /** A number in [0, 1) for the fault's own choices (which pod, which signal). */
  pick: number;
}

export interface ChaosPlan {
  seed: number;
  runMs: number;
  chaosStartMs: number;
  chaosEndMs: number;
  faults: PlannedFault[];
}

/** The outages the issue names last 60 s; the fleet stays scaled to 5 for 30 s. */
export const WINDOW_MS = 60_000;
export const SCALE_HOLD_MS = 30_000;
const CYCLE_MS = 15 * 60_000;
export const MIN_MINUTES = 4;
/** Room after a fault's start for it to play out before the chaos window closes. */
const EVENT_SPAN_MS = 30_000;

export function planChaos(options: { seed: number; runMs: number }): ChaosPlan {
  const { seed, runMs } = options;
  const random = prng(seed);
  const chaosStartMs = Math.max(20_000, Math.round(runMs * 0.05));
  const chaosEndMs = runMs - Math.max(60_000, Math.round(runMs * 0.1));
  // Both upstream faults must fit one after the other.
  if (chaosEndMs - chaosStartMs < 2 * WINDOW_MS + UPSTREAM_GAP_MS)
    throw new Error(
      `a run of ${runMs / 60_000} min is too short for the chaos schedule (at least ${MIN_MINUTES} min)`,
    );
  const cycles = Math.max(1, Math.round((chaosEndMs - chaosStartMs) / CYCLE_MS));
  const cycleMs = (chaosEndMs - chaosStartMs) / cycles;
  const faults: PlannedFault[] = [];
  for (let c = 0; c < cycles; c++) {
    const start = chaosStartMs + c * cycleMs;
    faults.push(...planCycle(random, start, start + cycleMs));
  }
  faults.sort((a, b) => a.atMs - b.atMs);
  return { seed, runMs, chaosStartMs, chaosEndMs, faults };
}

function planCycle(random: () => number, start: number, end: number): PlannedFault[] {
  for (let attempt = 0; ; attempt++) {
    const faults = FAULT_KINDS.map((kind) => {
      const durationMs = durationOf(kind);
      const latest = end - Math.max(durationMs, EVENT_SPAN_MS);
      return { kind, atMs: Math.round(start + random() * (latest - start)), durationMs, pick: random() };
    });
    // Attempts are drawn from the same seeded sequence, so the result is still the seed's.
    if (upstreamFaultsApart(faults)) return faults;
    if (attempt >= 10_000) throw new Error('no schedule keeps the upstream faults apart');
  }
}

function durationOf(kind: FaultKind): number {
  if (kind === 's3-down' || kind === 'upstream-down' || kind === 'upstream-429') return WINDOW_MS;
  return kind === 'scale' ? SCALE_HOLD_MS : 0;
}

const UPSTREAM_GAP_MS = 10_000;

function upstreamFaultsApart(faults: PlannedFault[]): boolean {
  const [a, b] = faults.filter((f) => f.kind === 'upstream-down' || f.kind === 'upstream-429');
  if (!a || !b) return true;
  const [first, second] = a.atMs <= b.atMs ? [a, b] : [b, a];
  return first.atMs + first.durationMs + UPSTREAM_GAP_MS <= second.atMs;
}

/** One line per fault, for the log and the report: `  02:15  s3-down (60 s)`. */
export function describePlan(plan: ChaosPlan): string[] {
  return plan.faults.map(
    (f) => `  ${clock(f.atMs)}  ${f.kind}${f.durationMs ? ` (${Math.round(f.durationMs / 1000)} s)` : ''}`,
  );
}

/** `mm:ss` from the start of the load. */
export function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}
