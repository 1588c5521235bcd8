import type { MirrorStatus, StorageShortfall } from '../../../core/admin-api.ts';
import { formatBytes } from '../../../core/byte-size.ts';
import { rfc3339 } from '../../../core/clock.ts';
import type { GitMirrorStatus, SnapshotRef } from '../api/gitmirror.ts';
import { describeError, OperatorError } from '../errors/operator-error.ts';
import { isCredentialsError, type ResolvedCredentials } from '../fleet/credentials.ts';
import { type ConditionInput, findCondition, removeCondition, setCondition } from './conditions.ts';

/** What one fleet member's sidecar said about the mirror in this reconcile. */
export interface MemberObservation {
  pod: string;
  status?: MirrorStatus;
  /** Set when the sidecar could not be asked or refused a call. */
  error?: string;
}

export interface Summary {
  total: number;
  warm: number;
  head?: string;
  lastFetchTime?: string;
  latestSnapshot?: SnapshotRef;
}

/** Replica counts, HEAD of the freshest warm replica and the newest snapshot any sidecar saw. */
export function summarize(members: MemberObservation[], previous: SnapshotRef | undefined): Summary {
  const warm = members.filter((m) => m.status?.ready);
  const freshest = warm
    .map((m) => m.status!)
    .filter((s) => s.lastFetchTime)
    .sort((a, b) => Date.parse(b.lastFetchTime!) - Date.parse(a.lastFetchTime!))[0];
  let latestSnapshot = previous;
  for (const m of members) {
    const seen = m.status?.latestSnapshot;
    if (seen && (!latestSnapshot || Date.parse(seen.createdAt) > Date.parse(latestSnapshot.createdAt))) {
      latestSnapshot = {
        key: seen.key,
        commit: seen.commit,
        createdAt: seen.createdAt,
        sizeBytes: seen.sizeBytes,
      };
    }
  }
  return {
    total: members.length,
    warm: warm.length,
    head: freshest?.head ?? warm.find((m) => m.status?.head)?.status?.head,
    lastFetchTime: freshest?.lastFetchTime,
    latestSnapshot,
  };
}

export interface Readiness {
  ready: ConditionInput;
  reconciling: ConditionInput;
}

/** Builds conditions that all describe one generation. */
function conditionAt(generation: number) {
  return (type: string, status: 'True' | 'False', reason: string, message: string): ConditionInput => ({
    type,
    status,
    reason,
    message,
    observedGeneration: generation,
  });
}

/**
 * Ready means the fleet serves the mirror from local data on at least one replica; Reconciling
 * stays True while some members are still warming, so `kubectl wait --for=condition=Ready`
 * returns as soon as clones are served from the cache. A member whose data volume cannot hold
 * the mirror makes the reason InsufficientStorage: waiting will not help, a bigger volume will.
 */
export function readiness(
  members: MemberObservation[],
  summary: Summary,
  generation: number,
  fleet: string,
): Readiness {
  const of = `${summary.warm}/${summary.total} replicas warm`;
  const c = conditionAt(generation);
  if (summary.total === 0) {
    const msg = 'no running pod of the fleet; the mirror is handed out when one starts';
    return {
      ready: c('Ready', 'False', 'NoReplicas', msg),
      reconciling: c('Reconciling', 'False', 'NoReplicas', msg),
    };
  }
  const storage = describeShortfall(members, fleet);
  const problems = storage ?? describeProblems(members);
  const message = problems ? `${of}; ${problems}` : of;
  const done = summary.warm === summary.total;
  const reconciling = done
    ? c('Reconciling', 'False', 'Reconciled', message)
    : c('Reconciling', 'True', storage ? INSUFFICIENT_STORAGE : 'WarmingUp', message);
  if (summary.warm > 0) return { ready: c('Ready', 'True', 'Warm', message), reconciling };
  return { ready: c('Ready', 'False', notReadyReason(members), message), reconciling };
}

const INSUFFICIENT_STORAGE = 'InsufficientStorage';

function notReadyReason(members: MemberObservation[]): string {
  if (members.some((m) => m.status?.disk?.shortfall)) return INSUFFICIENT_STORAGE;
  if (members.some((m) => m.status?.state === 'failed')) return 'MirrorFailed';
  if (members.every((m) => m.error)) return 'SidecarUnavailable';
  return 'WarmingUp';
}

/**
 * Which fleet cannot hold the mirror and how much it lacks (the largest shortfall among its
 * members: what the volume must grow by), with the sidecar's own numbers for one pod.
 */
function describeShortfall(members: MemberObservation[], fleet: string): string | undefined {
  const short = members.filter((m) => m.status?.disk?.shortfall);
  if (short.length === 0) return undefined;
  const worst = short.reduce((a, b) =>
    b.status!.disk!.shortfall!.missingBytes > a.status!.disk!.shortfall!.missingBytes ? b : a,
  );
  const s: StorageShortfall = worst.status!.disk!.shortfall!;
  const budget = s.limitBytes === undefined ? '' : ` (data budget ${formatBytes(s.limitBytes)})`;
  return (
    `fleet ${fleet}: the data volume of ${short.length}/${members.length} replicas cannot hold this ` +
    `mirror, ${formatBytes(s.missingBytes)} missing of the ${formatBytes(s.neededBytes)} it needs${budget}; ` +
    `raise the fleet's data volume size (chart: fleet.dataVolume.size); ` +
    `pod ${worst.pod}: ${s.message.slice(0, 300)}`
  );
}

function describeProblems(members: MemberObservation[]): string {
  const failed = members.find((m) => m.status?.state === 'failed');
  const unreachable = members.filter((m) => m.error);
  const parts: string[] = [];
  if (failed)
    parts.push(`pod ${failed.pod}: ${(failed.status?.restore.error ?? 'restore failed').slice(0, 300)}`);
  if (unreachable.length > 0)
    parts.push(`${unreachable.length} sidecar(s) not answering: ${unreachable[0]!.error}`);
  return parts.join('; ');
}

/**
 * Fresh tells whether the warm replicas can still fetch from upstream. While upstream is
 * down they keep serving what they have; this condition (and lastFetchTime) is where a
 * user sees that the data is getting old and why. Undefined while no replica is warm.
 */
export function freshness(members: MemberObservation[], generation: number): ConditionInput | undefined {
  const warm = members.map((m) => m.status).filter((s): s is MirrorStatus => s?.ready === true);
  if (warm.length === 0) return undefined;
  const failing = warm
    .filter((s) => s.lastFetchError)
    .sort((a, b) => (b.stalenessSeconds ?? 0) - (a.stalenessSeconds ?? 0));
  const worst = failing[0];
  if (!worst) {
    return {
      type: 'Fresh',
      status: 'True',
      reason: 'FetchSucceeded',
      message: 'the last fetch from upstream succeeded',
      observedGeneration: generation,
    };
  }
  const age = worst.stalenessSeconds === undefined ? '' : `, serving data ${worst.stalenessSeconds}s old`;
  return {
    type: 'Fresh',
    status: 'False',
    reason: 'FetchFailing',
    message: `${failing.length}/${warm.length} warm replicas cannot fetch from upstream${age}: ${worst.lastFetchError!.slice(0, 300)}`,
    observedGeneration: generation,
  };
}

/** What one reconcile found out, however far it got: the input of its one status write. */
export interface ReconcileOutcome {
  /** The mirror id, once the spec's URL was read. */
  repository?: string;
  /** The credentials, once read: `none` when the spec names no Secret. */
  credentials?: ResolvedCredentials | 'none';
  /** What the fleet's sidecars said, once they were asked, and the writer after the hand-over. */
  fleet?: { cache: string; members: MemberObservation[]; summary: Summary; writer: string | undefined };
  /** What stopped the reconcile, if anything. */
  error?: unknown;
}

/** The status after one reconcile: from the fleet when it was asked, else from what stopped it. */
export function statusAfter(input: {
  previous: GitMirrorStatus | undefined;
  generation: number;
  now: string;
  outcome: ReconcileOutcome;
}): GitMirrorStatus {
  const { previous, generation, now, outcome } = input;
  const credentials = credentialsCondition(outcome, generation);
  return buildStatus({
    previous,
    generation,
    now,
    repository: outcome.repository ?? previous?.repository,
    summary: outcome.fleet?.summary,
    writer: outcome.fleet?.writer,
    githubApp: outcome.credentials === undefined ? previous?.githubApp : githubAppStatus(outcome.credentials),
    conditions: [...conditionsAfter(outcome, previous, generation), ...(credentials ? [credentials] : [])],
    removedConditions: outcome.credentials === 'none' ? ['CredentialsReady'] : [],
  });
}

/**
 * CredentialsReady, when the spec names a Secret: True once the fleet has credentials (for a
 * GitHub App, a minted token); False with the reason when they could not be had, or when the
 * token's refresh fails while the one in hand still works. Undefined when this pass did not get
 * as far as reading them (the condition then stays as it was).
 */
function credentialsCondition(outcome: ReconcileOutcome, generation: number): ConditionInput | undefined {
  const c = conditionAt(generation);
  const { credentials, error } = outcome;
  if (credentials === undefined) {
    if (!isCredentialsError(error)) return undefined;
    return c('CredentialsReady', 'False', credentialsReason(error), error.message);
  }
  if (credentials === 'none') return undefined;
  const app = credentials.githubApp;
  if (!app) return c('CredentialsReady', 'True', 'SecretRead', 'the fleet has the credentials of the Secret');
  const until = `the fleet's installation token is valid until ${rfc3339(app.expiresAt)}`;
  if (app.refreshError) {
    const next = app.nextAt === undefined ? '' : `, next attempt at ${rfc3339(app.nextAt)}`;
    const message = `${app.refreshError.message}; ${until}${next}`;
    return c('CredentialsReady', 'False', credentialsReason(app.refreshError), message);
  }
  const refresh = app.nextAt === undefined ? '' : ` and is replaced at ${rfc3339(app.nextAt)}`;
  return c('CredentialsReady', 'True', 'TokenMinted', `${until}${refresh}`);
}

function credentialsReason(err: OperatorError): string {
  return err.stalledReason ?? 'GitHubUnavailable';
}

function githubAppStatus(credentials: ResolvedCredentials | 'none'): GitMirrorStatus['githubApp'] {
  const app = credentials === 'none' ? undefined : credentials.githubApp;
  if (!app) return undefined;
  const time = (ms: number | undefined) => (ms === undefined ? undefined : rfc3339(ms));
  return dropUndefined({
    tokenExpiresTime: rfc3339(app.expiresAt),
    refreshTime: time(app.nextAt),
    lastMintTime: time(app.lastMintAt),
  });
}

function conditionsAfter(
  outcome: ReconcileOutcome,
  previous: GitMirrorStatus | undefined,
  generation: number,
): ConditionInput[] {
  const c = conditionAt(generation);
  if (outcome.fleet) {
    const { members, summary } = outcome.fleet;
    const { ready, reconciling } = readiness(members, summary, generation, outcome.fleet.cache);
    const fresh = freshness(members, generation);
    return [ready, reconciling, c('Stalled', 'False', 'NoError', ''), ...(fresh ? [fresh] : [])];
  }
  const { error } = outcome;
  const stalled = error instanceof OperatorError ? error.stalledReason : undefined;
  if (error instanceof OperatorError && stalled) {
    return [
      c('Ready', 'False', stalled, error.message),
      c('Stalled', 'True', stalled, error.message),
      c('Reconciling', 'False', stalled, error.message),
    ];
  }
  // The fleet was not asked, so whether it serves is not known anew: a Ready True stands.
  const message = describeError(error);
  const retrying = [
    c('Reconciling', 'True', 'ProgressingWithRetry', message),
    c('Stalled', 'False', 'NoError', ''),
  ];
  if (findCondition(previous?.conditions, 'Ready')?.status === 'True') return retrying;
  return [c('Ready', 'False', 'ProgressingWithRetry', message), ...retrying];
}

export interface StatusInput {
  previous: GitMirrorStatus | undefined;
  generation: number;
  repository: string | undefined;
  summary: Summary | undefined;
  writer: string | undefined;
  githubApp: GitMirrorStatus['githubApp'];
  conditions: ConditionInput[];
  /** Condition types that no longer apply (CredentialsReady once the spec names no Secret). */
  removedConditions?: string[];
  now: string;
}

/**
 * Fields of the status that other writers own: the webhook receiver, on whichever operator
 * replica took a delivery, patches `webhook`. A reconcile keeps what it read and never sends it,
 * so its patch cannot undo a delivery recorded meanwhile.
 */
const FOREIGN_FIELDS = ['webhook'] as const;

/** The complete desired status. Conditions not listed keep their previous value. */
export function buildStatus(input: StatusInput): GitMirrorStatus {
  let conditions = input.previous?.conditions;
  for (const c of input.conditions) conditions = setCondition(conditions, c, input.now);
  for (const type of input.removedConditions ?? []) conditions = removeCondition(conditions, type);
  const s = input.summary;
  const status: GitMirrorStatus = {
    ...(s ? {} : input.previous),
    observedGeneration: input.generation,
    conditions,
    repository: input.repository,
    githubApp: input.githubApp,
    webhook: input.previous?.webhook,
  };
  if (s) {
    Object.assign(status, {
      head: s.head,
      lastFetchTime: s.lastFetchTime,
      latestSnapshot: s.latestSnapshot,
      replicas: { total: s.total, warm: s.warm },
      writer: input.writer,
    });
  }
  return dropUndefined(status);
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * A JSON merge patch turning `previous` into `next`: top-level fields that disappeared are sent
 * as null, the rest replace whole values (conditions is a list, so it is always sent whole).
 */
export function statusPatch(
  previous: GitMirrorStatus | undefined,
  next: GitMirrorStatus,
): Record<string, unknown> {
  const patch: Record<string, unknown> = { ...next };
  for (const key of Object.keys(previous ?? {})) if (!(key in next)) patch[key] = null;
  for (const key of FOREIGN_FIELDS) delete patch[key];
  return patch;
}
