import { isDeepStrictEqual } from 'node:util';
import type { FleetPeers, MirrorStatus } from '../../../core/admin-api.ts';
import { rfc3339 } from '../../../core/clock.ts';
import { type GitMirror, type GitMirrorStatus, KIND, splitKey } from '../api/gitmirror.ts';
import type { ObjectRef, Pod } from '../api/kubernetes.ts';
import { describeError, OperatorError } from '../errors/operator-error.ts';
import type { FleetContext } from '../fleet/context.ts';
import { type ResolvedCredentials, readCredentials } from '../fleet/credentials.ts';
import { fleetPods, isFleetMember, isReachable, sidecarTarget } from '../fleet/members.ts';
import { ensureMirrorSpec, ensureRestoring } from '../fleet/mirror-sync.ts';
import { fleetPeers, mirrorSpecFor, repositoryOf, specDuration } from '../fleet/spec.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import type { SidecarTarget } from '../sidecar/admin-client.ts';
import { findCondition } from './conditions.ts';
import { ensureFinalizer, hasFinalizer, removeFinalizer } from './finalizer.ts';
import {
  type MemberObservation,
  type ReconcileOutcome,
  statusAfter,
  statusPatch,
  summarize,
} from './status.ts';
import { chooseWriter } from './writer-selection.ts';

export interface ReconcileSettings {
  adminPort: number;
  /** Poll interval while some replica is still warming. */
  warmingRequeueMs: number;
  /** Upper bound of the steady-state poll (status follows the sidecars' fetches). */
  maxSteadyRequeueMs: number;
  /** Pause before a failed restore is started again. */
  restoreRetryMs: number;
  /** How long a delete waits for unreachable sidecars before dropping the finalizer anyway. */
  cleanupGraceMs: number;
}

export interface GitMirrorReconcilerDeps extends FleetContext {
  settings: ReconcileSettings;
}

interface Plan {
  gm: GitMirror;
  id: string;
  credentials: ResolvedCredentials | undefined;
  token: string;
}

/** One reachable fleet pod and what its sidecar says about the mirror. */
interface Observation {
  pod: Pod;
  member: boolean;
  target: SidecarTarget;
  status?: MirrorStatus;
  error?: string;
}

/**
 * Reconciles one GitMirror: hands it to every member of its fleet, keeps exactly one snapshot
 * writer, and reports what the sidecars say in status. Level-triggered: everything is derived
 * from the object, the pod cache and the sidecars on each pass.
 */
export class GitMirrorReconciler {
  readonly #d: GitMirrorReconcilerDeps;

  constructor(deps: GitMirrorReconcilerDeps) {
    this.#d = deps;
  }

  /**
   * The steps run in order and any of them may stop the pass; whatever happened, status is
   * built from it and patched once, so an error before the fleet was asked (finalizer, spec,
   * credentials Secret, admin token) shows in the conditions too. The error then goes to the
   * controller, which acts on its kind.
   */
  readonly reconcile = async (key: string): Promise<ReconcileResult> => {
    const { namespace, name } = splitKey(key);
    const cached = this.#d.stores.gitMirrors.get(namespace, name);
    if (!cached) return {};
    if (cached.metadata.deletionTimestamp) return this.#finalize(cached);
    const outcome: ReconcileOutcome = {};
    let gm = cached;
    let result: ReconcileResult = {};
    try {
      gm = await ensureFinalizer(this.#d.api, gm);
      result = await this.#steps(gm, outcome);
    } catch (err) {
      outcome.error = err;
    }
    const generation = gm.metadata.generation ?? 0;
    await this.#writeStatus(gm, statusAfter({ previous: gm.status, generation, now: this.#now(), outcome }));
    if (outcome.error !== undefined) throw outcome.error;
    return result;
  };

  /** Resolves the spec, asks the fleet, elects the writer and hands the mirror out. */
  async #steps(gm: GitMirror, outcome: ReconcileOutcome): Promise<ReconcileResult> {
    outcome.repository = repositoryOf(gm);
    const plan = await this.#plan(gm, outcome);
    const observations = await this.#observe(plan);
    const members = observations.filter((o) => o.member);
    const recorded = gm.status?.writer || undefined;
    const writer = chooseWriter(
      recorded,
      members.map((o) => ({
        name: o.pod.metadata.name,
        createdMs: Date.parse(o.pod.metadata.creationTimestamp ?? '') || 0,
        // An unanswering recorded writer keeps the role: it may still be writing.
        ready: Boolean(o.status?.ready) || (o.error !== undefined && o.pod.metadata.name === recorded),
        writing: o.status?.snapshot.writer === true,
      })),
    );
    const applied = await this.#apply(plan, observations, writer, recorded);
    const memberObservations: MemberObservation[] = members.map((o) => ({
      pod: o.pod.metadata.name,
      status: o.status,
      error: o.error,
    }));
    const summary = summarize(memberObservations, gm.status?.latestSnapshot);
    outcome.fleet = { cache: gm.spec.cache, members: memberObservations, summary, writer: applied.writer };
    if (applied.failure) throw applied.failure;
    // Until the first snapshot shows up, look as often as while warming: the writer publishes
    // soon after it is chosen, and nothing else would tell us.
    const awaitingSnapshot = applied.writer !== undefined && !summary.latestSnapshot;
    const poll = this.#requeueAfter(gm, summary.warm < summary.total || awaitingSnapshot);
    return { requeueAfterMs: Math.min(poll, this.#untilTokenRefresh(plan.credentials) ?? poll) };
  }

  async #plan(gm: GitMirror, outcome: ReconcileOutcome): Promise<Plan> {
    specDuration(gm.spec.fetchInterval, 'spec.fetchInterval');
    specDuration(gm.spec.snapshot.interval, 'spec.snapshot.interval');
    const credentials = await readCredentials(this.#d, gm);
    outcome.credentials = credentials ?? 'none';
    const token = await this.#d.tokens.ensure(gm.metadata.namespace ?? '');
    return { gm, id: outcome.repository!, credentials, token };
  }

  /**
   * A GitHub App's token is replaced ahead of its expiry (or its failed mint retried) at a time
   * the token cache knows; the fleet gets the new one on the pass that runs then.
   */
  #untilTokenRefresh(credentials: ResolvedCredentials | undefined): number | undefined {
    const nextAt = credentials?.githubApp?.nextAt;
    return nextAt === undefined ? undefined : Math.max(1_000, nextAt - this.#d.clock.now());
  }

  async #observe(plan: Plan): Promise<Observation[]> {
    const { gm, id, token } = plan;
    const pods = fleetPods(this.#d.stores.pods, gm.metadata.namespace ?? '', gm.spec.cache).filter(
      isReachable,
    );
    return Promise.all(
      pods.map(async (pod): Promise<Observation> => {
        const target = sidecarTarget(pod, this.#d.settings.adminPort, token);
        const observation: Observation = { pod, member: isFleetMember(pod), target };
        try {
          observation.status = await this.#d.sidecars.getMirror(target, id);
        } catch (err) {
          observation.error = describeError(err);
        }
        return observation;
      }),
    );
  }

  /**
   * Demotes every pod that may be writing, then promotes the chosen writer only if all of
   * those demotions succeeded: at no moment do two sidecars hold the writer role.
   */
  async #apply(
    plan: Plan,
    observations: Observation[],
    writer: string | undefined,
    recorded: string | undefined,
  ) {
    const mayWrite = (o: Observation) =>
      o.status?.snapshot.writer === true ||
      (o.status === undefined && o.error !== undefined && o.pod.metadata.name === recorded);
    const suspects = new Set(observations.filter((o) => o.pod.metadata.name !== writer && mayWrite(o)));
    const others = observations.filter(
      (o) => o.pod.metadata.name !== writer && (o.member || suspects.has(o)),
    );
    const chosen = observations.find((o) => o.pod.metadata.name === writer);
    // Followers fetch from the chosen writer; until it is promoted it refuses them, and they ask upstream.
    const peers = {
      writer: chosen?.target.baseUrl,
      members: observations.filter((o) => o.member).map((o) => o.target.baseUrl),
    };
    const fleetOf = (o: Observation) => fleetPeers(o.target.baseUrl, peers);
    const results = await Promise.all(
      others.map((o) => this.#syncPod(plan, o, { writer: false, fleet: fleetOf(o) })),
    );
    let failure = results.find((r) => r !== undefined);
    const blocked = others.some((o, i) => results[i] !== undefined && suspects.has(o));
    if (chosen && !blocked)
      failure = (await this.#syncPod(plan, chosen, { writer: true, fleet: fleetOf(chosen) })) ?? failure;
    if (blocked) {
      const message = `snapshot writer hand-over to ${writer} waits until the previous writer is demoted`;
      failure = new OperatorError('WRITER_HANDOVER_BLOCKED', message, {
        cause: failure,
        requeueAfterMs: this.#d.settings.warmingRequeueMs,
      });
    }
    // Unconfirmed (the writer did not answer) keeps the record: that pod may still be writing.
    const confirmed = chosen?.status?.snapshot.writer === true || writer === recorded;
    return { writer: blocked ? recorded : confirmed ? writer : undefined, failure };
  }

  /** Brings one pod's mirror to the desired spec and starts its restore; returns the error, if any. */
  async #syncPod(
    plan: Plan,
    o: Observation,
    role: { writer: boolean; fleet: FleetPeers | undefined },
  ): Promise<Error | undefined> {
    const { sidecars, applied, clock, settings } = this.#d;
    const desired = mirrorSpecFor(plan.gm, plan.credentials?.credentials, role);
    const sync = { target: o.target, podUid: o.pod.metadata.uid ?? '' };
    try {
      o.status = await ensureMirrorSpec(
        { sidecars, applied },
        { ...sync, id: plan.id, desired, current: o.status },
      );
      if (o.member) {
        o.status = await ensureRestoring(
          sidecars,
          { target: o.target, id: plan.id, status: o.status },
          { nowMs: clock.now(), retryAfterMs: settings.restoreRetryMs },
        );
      }
      o.error = undefined;
      return undefined;
    } catch (err) {
      o.error = describeError(err);
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  async #finalize(gm: GitMirror): Promise<ReconcileResult> {
    if (!hasFinalizer(gm)) return {};
    const failures = await this.#removeFromSidecars(gm);
    if (failures.length > 0) {
      const waitedMs = this.#d.clock.now() - Date.parse(gm.metadata.deletionTimestamp ?? '');
      if (waitedMs < this.#d.settings.cleanupGraceMs) throw failures[0];
      await this.#event(
        gm,
        'Warning',
        'CleanupIncomplete',
        'Delete',
        `gave up removing the mirror from ${failures.length} unreachable sidecar(s): ${describeError(failures[0])}`,
      );
    }
    await removeFinalizer(this.#d.api, gm);
    return {};
  }

  async #removeFromSidecars(gm: GitMirror): Promise<unknown[]> {
    let id: string;
    try {
      id = repositoryOf(gm);
    } catch {
      return []; // an invalid URL was never handed to a sidecar
    }
    const namespace = gm.metadata.namespace ?? '';
    const token = await this.#d.tokens.ensure(namespace);
    const pods = fleetPods(this.#d.stores.pods, namespace, gm.spec.cache).filter(isReachable);
    const failures: unknown[] = [];
    await Promise.all(
      pods.map(async (pod) => {
        try {
          await this.#d.sidecars.deleteMirror(sidecarTarget(pod, this.#d.settings.adminPort, token), id);
          this.#d.applied.forget(pod.metadata.uid ?? '', id);
        } catch (err) {
          failures.push(err);
        }
      }),
    );
    return failures;
  }

  async #writeStatus(gm: GitMirror, next: GitMirrorStatus): Promise<void> {
    const previous = gm.status;
    if (isDeepStrictEqual(previous ?? {}, next)) return;
    await this.#d.api.patchGitMirrorStatus(
      gm.metadata.namespace ?? '',
      gm.metadata.name,
      statusPatch(previous, next),
    );
    await this.#recordTransitions(gm, previous, next);
  }

  async #recordTransitions(gm: GitMirror, previous: GitMirrorStatus | undefined, next: GitMirrorStatus) {
    const before = findCondition(previous?.conditions, 'Ready');
    const after = findCondition(next.conditions, 'Ready');
    if (after && (before?.status !== after.status || before.reason !== after.reason)) {
      const type =
        after.status === 'True' || after.reason === 'WarmingUp' || after.reason === 'NoReplicas'
          ? 'Normal'
          : 'Warning';
      await this.#event(gm, type, after.reason, 'Reconcile', after.message);
    }
    if (next.writer && next.writer !== previous?.writer) {
      await this.#event(
        gm,
        'Normal',
        'WriterElected',
        'ElectWriter',
        `pod ${next.writer} now publishes snapshots`,
      );
    }
  }

  #event(gm: GitMirror, type: 'Normal' | 'Warning', reason: string, action: string, note: string) {
    const regarding: ObjectRef = {
      apiVersion: gm.apiVersion,
      kind: KIND,
      namespace: gm.metadata.namespace ?? '',
      name: gm.metadata.name,
      uid: gm.metadata.uid,
    };
    return this.#d.events.record({ regarding, type, reason, action, note });
  }

  #requeueAfter(gm: GitMirror, warming: boolean): number {
    const { warmingRequeueMs, maxSteadyRequeueMs } = this.#d.settings;
    if (warming) return warmingRequeueMs;
    const fetchMs = specDuration(gm.spec.fetchInterval, 'spec.fetchInterval');
    return Math.min(Math.max(fetchMs, 60_000), maxSteadyRequeueMs);
  }

  #now(): string {
    return rfc3339(this.#d.clock.now());
  }
}
