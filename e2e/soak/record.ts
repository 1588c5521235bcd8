import type { RefHistoryJson } from './ref-history.ts';
import type { ChaosPlan, FaultKind } from './schedule.ts';

/**
 * Everything a soak run records, as plain data: the invariants are judged from this alone
 * (invariants.ts), so a run's JSON can be judged again, and the judges can be tested on
 * records of deliberately broken runs.
 */

export type OpKind = 'clone' | 'checkout' | 'partial' | 'fetch' | 'lfs' | 'ls-remote';

export interface OpRecord {
  id: number;
  kind: OpKind;
  repo: string;
  /** The fleet pod whose ready endpoint it went to. */
  pod: string;
  start: number;
  end: number;
  /** Whether git itself succeeded. */
  ok: boolean;
  /** git's error, shortened. */
  error?: string;
  /** After a successful operation that leaves a repository: `clean`, or fsck's complaint. */
  fsck?: string;
  /**
   * The upstream state the refs it got equal (ref-history.ts), null when upstream never had
   * them; absent when the operation gets one ref only (checkout), which `refKnown` judges.
   */
  state?: number | null;
  /** When `state` is null: how the refs differ from the nearest upstream state (ref-history.ts `nearest`). */
  refsDiff?: string;
  /** checkout: whether the fetched commit is one that upstream's branch ever pointed at. */
  refKnown?: boolean;
  /** lfs: the LFS files checked out, and what was wrong with them (lfs.ts `verifyLfsCheckout`). */
  lfs?: LfsCheck;
}

export interface LfsCheck {
  /** LFS files in the checkout. */
  objects: number;
  /** What is wrong, or absent when every file is the object its pointer names and upstream holds. */
  problem?: string;
}

export interface KillRecord {
  pod: string;
  at: number;
  /** When the load generator stopped seeing the pod among the Service's ready endpoints. */
  endpointGoneAt?: number;
}

export interface FaultRecord {
  kind: FaultKind;
  /** The planned offset from the start of the load. */
  plannedMs: number;
  at: number;
  /** The end of the outage window (S3, upstream) or of the action (helm, restart). */
  endedAt?: number;
  /** When the fleet was whole again (see chaos.ts for each kind's condition). */
  recoveredAt?: number;
  detail: string;
  error?: string;
}

export interface ResourceSample {
  at: number;
  role: 'sidecar' | 'operator';
  pod: string;
  pid: number;
  rssBytes: number;
  fds: number;
}

export interface DiskSample {
  at: number;
  pod: string;
  bytes: number;
}

/** What the observers saw break while the fleet ran (they need the live system to see it). */
export interface LiveViolation {
  at: number;
  invariant: 'ready-implies-warm' | 'single-writer' | 'restores-not-clones';
  detail: string;
}

export interface FinalChecks {
  /** Per pod and mirror: refs equal upstream's (what `ls-remote` through the pod shows). */
  mirrorsEqualUpstream: string[];
  /** Per mirror: latest.json names an archive of the size and sha256 it says. */
  snapshotsWhole: string[];
  /** Temp dirs, spool files, stale locks in the pods' data dirs; the soak's own leftovers. */
  leftovers: string[];
  multipartUploads: string[];
  orphanedProcesses: string[];
  /** Each line a problem; the lists above are empty when all is well. */
  checkedAt: number;
}

export interface RepoInfo {
  name: string;
  size: 'small' | 'medium' | 'large';
  objects: number;
  packBytes: number;
  refs: number;
  /** The LFS repository: the objects upstream held at the end of the run. */
  lfs?: { objects: number; bytes: number };
}

export interface SoakMeta {
  minutes: number;
  short: boolean;
  seed: number;
  /** Load operations started per minute (the fixed rate). */
  rate: number;
  /** When the load started and stopped. */
  loadStart: number;
  loadEnd: number;
  /** Whole run: cluster start to the end of the final checks. */
  startedAt: number;
  finishedAt?: number;
  phases: Record<string, number>;
  machine: { cpus: number; cpuModel: string; memGiB: number; kernel: string; node: string; git: string };
  loadAverage: { start: number[]; end?: number[] };
  repos: RepoInfo[];
  /** The bound served refs are judged against: the ref-check interval plus one fetch. */
  lagBoundMs: number;
  refCheckIntervalMs: number;
  /** The longest fetch the sidecars' histogram shows (its bucket's upper bound). */
  fetchBoundMs: number;
  /** The data volume's budget. */
  dataBudgetBytes: number;
  sabotage: string[];
}

export interface SoakRecord {
  meta: SoakMeta;
  plan: ChaosPlan;
  faults: FaultRecord[];
  kills: KillRecord[];
  ops: OpRecord[];
  /** Load ticks that found too many operations in flight and started none. */
  skippedTicks: number[];
  histories: RefHistoryJson[];
  resources: ResourceSample[];
  disk: DiskSample[];
  live: LiveViolation[];
  /** Each time an operator pod was first seen holding the Lease. */
  leaders: { at: number; pod: string }[];
  samples: { fleet: number; fleetErrors: number };
  final?: FinalChecks;
}

/** A record with nothing observed yet. */
export function newRecord(meta: SoakMeta, plan: ChaosPlan): SoakRecord {
  return {
    meta,
    plan,
    faults: [],
    kills: [],
    ops: [],
    skippedTicks: [],
    histories: [],
    resources: [],
    disk: [],
    live: [],
    leaders: [],
    samples: { fleet: 0, fleetErrors: 0 },
  };
}
