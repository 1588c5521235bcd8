import type { MirrorStatus } from '../../../core/admin-api.ts';
import { rfc3339 } from '../../../core/clock.ts';
import { type GitMirror, splitKey } from '../api/gitmirror.ts';
import type { Pod } from '../api/kubernetes.ts';
import { describeError, errorKind, isOperatorError } from '../errors/operator-error.ts';
import type { FleetContext } from '../fleet/context.ts';
import { readCredentials } from '../fleet/credentials.ts';
import {
  fleetOf,
  isFleetMember,
  isPodReady,
  mirrorsOfFleet,
  podStartMs,
  sidecarTarget,
  warmCondition,
} from '../fleet/members.ts';
import { ensureMirrorSpec, ensureRestoring } from '../fleet/mirror-sync.ts';
import { mirrorSpecFor, repositoryOf, specDuration } from '../fleet/spec.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import type { OperatorMetrics } from '../runtime/metrics.ts';
import type { SidecarTarget } from '../sidecar/admin-client.ts';
import { conditionFor, decideGate, type GateDecision, type MirrorProgress } from './gate.ts';

export interface WarmupSettings {
  adminPort: number;
  /** How often a warming pod's sidecar is polled. */
  pollMs: number;
  restoreRetryMs: number;
}

export interface PodReconcilerDeps extends FleetContext {
  metrics: OperatorMetrics;
  settings: WarmupSettings;
}

/** A GitMirror of the fleet that this pod must hold before it takes traffic. */
interface Assignment {
  gm: GitMirror;
  id: string;
  timeoutMs: number;
}

/**
 * Warms one fleet pod: hands its sidecar every mirror of the fleet, starts the restores, and
 * opens the `gitmirror.dev/warm` gate once all report ready (or per the timeout policy). It
 * never waits inside a reconcile: while warming it asks to be looked at again. Nothing it
 * needs lives in memory, so a new leader picks a half-warmed pod up where it stood.
 */
export class PodReconciler {
  readonly #d: PodReconcilerDeps;

  constructor(deps: PodReconcilerDeps) {
    this.#d = deps;
  }

  readonly reconcile = async (key: string): Promise<ReconcileResult> => {
    const { namespace, name } = splitKey(key);
    const pod = this.#d.stores.pods.get(namespace, name);
    const cache = pod && fleetOf(pod);
    if (!pod || !cache) return {};
    // Fleet pods mount the token Secret, so it must exist before they can even start.
    const token = await this.#d.tokens.ensure(namespace);
    // The gate goes False→True once per pod lifetime; later mirrors warm in the background.
    if (warmCondition(pod)?.status === 'True' || !isFleetMember(pod)) return {};
    const assignments = this.#assignments(mirrorsOfFleet(this.#d.stores.gitMirrors, namespace, cache));
    const target = sidecarTarget(pod, this.#d.settings.adminPort, token);
    const { progress, sidecarError } = await this.#warm(pod, target, assignments);
    const decision = decideGate({
      startedMs: podStartMs(pod),
      nowMs: this.#d.clock.now(),
      mirrors: progress,
      sidecarError,
      pollMs: this.#d.settings.pollMs,
    });
    await this.#applyDecision(pod, decision);
    return decision.requeueAfterMs === undefined ? {} : { requeueAfterMs: decision.requeueAfterMs };
  };

  /** GitMirrors with an invalid spec are Stalled in their own status and hold no pod back. */
  #assignments(gms: GitMirror[]): Assignment[] {
    const out: Assignment[] = [];
    for (const gm of gms) {
      try {
        out.push({
          gm,
          id: repositoryOf(gm),
          timeoutMs: specDuration(gm.spec.warmup.timeout, 'spec.warmup.timeout'),
        });
      } catch (err) {
        this.#d.logger.warn(
          { gitmirror: gm.metadata.name, err: describeError(err) },
          'skipping invalid GitMirror',
        );
      }
    }
    return out;
  }

  async #warm(pod: Pod, target: SidecarTarget, assignments: Assignment[]) {
    if (assignments.length === 0) return { progress: [] as MirrorProgress[] };
    let held: Map<string, MirrorStatus>;
    try {
      held = new Map((await this.#d.sidecars.listMirrors(target)).map((m) => [m.id, m]));
    } catch (err) {
      if (isOperatorError(err, 'SIDECAR_UNAUTHORIZED'))
        this.#d.tokens.invalidate(pod.metadata.namespace ?? '');
      const sidecarError = describeError(err);
      return { progress: assignments.map((a) => progressOf(a, undefined, sidecarError)), sidecarError };
    }
    const progress = await Promise.all(assignments.map((a) => this.#warmOne(pod, target, a, held.get(a.id))));
    return { progress: progress.filter((p) => p !== undefined) };
  }

  /** PUTs a mirror the sidecar lacks and starts its restore. Existing specs are the GitMirror controller's. */
  async #warmOne(pod: Pod, target: SidecarTarget, a: Assignment, held: MirrorStatus | undefined) {
    const { sidecars, applied, clock, settings } = this.#d;
    try {
      let status = held;
      if (!status) {
        const credentials = (await readCredentials(this.#d, a.gm))?.credentials;
        const sync = { target, podUid: pod.metadata.uid ?? '' };
        status = await ensureMirrorSpec(
          { sidecars, applied },
          {
            ...sync,
            id: a.id,
            desired: mirrorSpecFor(a.gm, credentials, { writer: false }),
            current: undefined,
          },
        );
      }
      status = await ensureRestoring(
        sidecars,
        { target, id: a.id, status },
        { nowMs: clock.now(), retryAfterMs: settings.restoreRetryMs },
      );
      return progressOf(a, status, undefined);
    } catch (err) {
      // Only a person can fix it: the GitMirror reports it as Stalled and holds no pod back.
      if (errorKind(err) === 'stalled') {
        this.#d.logger.warn(
          { gitmirror: a.gm.metadata.name, err: describeError(err) },
          'GitMirror is stalled; not waiting for it',
        );
        return undefined;
      }
      return progressOf(a, held, describeError(err));
    }
  }

  async #applyDecision(pod: Pod, decision: GateDecision): Promise<void> {
    // A pod already Ready (no gate in its spec, or another path) is never taken out of service.
    if (decision.status === 'False' && isPodReady(pod)) return;
    const current = warmCondition(pod);
    const condition = conditionFor(decision, current, rfc3339(this.#d.clock.now()));
    if (!condition) return;
    const { namespace = '', name, uid = '' } = pod.metadata;
    await this.#d.api.patchPodCondition(namespace, name, uid, condition);
    if (condition.status === 'True') {
      const seconds = (this.#d.clock.now() - podStartMs(pod)) / 1000;
      this.#d.metrics.warmupSeconds.observe({ reason: decision.reason }, seconds);
    }
    if (current?.reason !== decision.reason) await this.#recordTransition(pod, decision);
  }

  #recordTransition(pod: Pod, decision: GateDecision) {
    const timedOut = decision.reason === 'WarmupTimeout';
    if (decision.status === 'False' && !timedOut) return Promise.resolve();
    return this.#d.events.record({
      regarding: {
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: pod.metadata.namespace ?? '',
        name: pod.metadata.name,
        uid: pod.metadata.uid,
      },
      type: timedOut ? 'Warning' : 'Normal',
      reason: decision.reason,
      action: 'Warmup',
      note: decision.message,
    });
  }
}

function progressOf(
  a: Assignment,
  status: MirrorStatus | undefined,
  error: string | undefined,
): MirrorProgress {
  return {
    id: a.id,
    ready: status?.ready === true,
    phase: status ? (status.restore.phase !== 'idle' ? status.restore.phase : status.state) : undefined,
    error: error ?? (status?.state === 'failed' ? status.restore.error : undefined),
    insufficientStorage: status?.disk?.shortfall !== undefined,
    timeoutMs: a.timeoutMs,
    onTimeout: a.gm.spec.warmup.onTimeout,
  };
}
