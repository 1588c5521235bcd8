import { WARM_CONDITION } from '../api/gitmirror.ts';
import type { PodCondition } from '../api/kubernetes.ts';

/** How one mirror of the fleet stands on the pod being warmed. */
export interface MirrorProgress {
  /** The mirror id (host/path). */
  id: string;
  ready: boolean;
  /** Restore phase or state, for the condition message. */
  phase?: string;
  error?: string;
  /** Its warm-up was refused for lack of space on the data volume (INSUFFICIENT_STORAGE). */
  insufficientStorage?: boolean;
  timeoutMs: number;
  onTimeout: 'Open' | 'Closed';
}

export interface GateInput {
  startedMs: number;
  nowMs: number;
  mirrors: MirrorProgress[];
  /** Set when the sidecar could not be asked at all. */
  sidecarError?: string;
  pollMs: number;
}

export interface GateDecision {
  status: 'True' | 'False';
  reason: string;
  message: string;
  /** Look again after this long; absent once the decision is final. */
  requeueAfterMs?: number;
}

/**
 * The warm gate of one pod, from nothing but the pod's start time and what its sidecar reports
 * now, so any leader reaches the same answer. Each mirror's own timeout and policy apply; the
 * gate opens on timeout only when every mirror still pending says Open.
 */
export function decideGate(input: GateInput): GateDecision {
  const { mirrors, nowMs, startedMs, pollMs } = input;
  if (mirrors.length === 0)
    return { status: 'True', reason: 'NoMirrors', message: 'the fleet carries no GitMirror to warm' };
  const pending = mirrors.filter((m) => !m.ready);
  if (pending.length === 0) {
    return { status: 'True', reason: 'Warm', message: `${mirrors.length} mirror(s) restored and caught up` };
  }
  const elapsed = nowMs - startedMs;
  const waiting = pending.filter((m) => elapsed < m.timeoutMs);
  const progress = `${mirrors.length - pending.length}/${mirrors.length} mirrors ready; waiting for ${describe(pending)}`;
  if (waiting.length > 0) {
    const untilTimeout = Math.min(...waiting.map((m) => m.timeoutMs - elapsed));
    // A refused warm-up waits out its timeout too: the pod then follows onTimeout, where
    // writing on regardless would have had it evicted for overrunning its volume.
    const short = pending.some((m) => m.insufficientStorage);
    const reason = input.sidecarError ? 'SidecarUnavailable' : short ? 'InsufficientStorage' : 'WarmingUp';
    const message = input.sidecarError ? `sidecar not answering: ${input.sidecarError}` : progress;
    return { status: 'False', reason, message, requeueAfterMs: Math.max(1, Math.min(pollMs, untilTimeout)) };
  }
  if (pending.every((m) => m.onTimeout === 'Open')) {
    return {
      status: 'True',
      reason: 'WarmupTimeout',
      message: `opened after the warm-up timeout; ${progress}`,
    };
  }
  return {
    status: 'False',
    reason: 'WarmupTimeout',
    message: `warm-up timed out and a mirror's onTimeout is Closed; ${progress}`,
    requeueAfterMs: pollMs,
  };
}

function describe(pending: MirrorProgress[]): string {
  const shown = pending.slice(0, 5).map((m) => {
    const detail = m.error ? `${m.phase ?? 'failed'}: ${m.error.slice(0, 200)}` : m.phase;
    return detail ? `${m.id} (${detail})` : m.id;
  });
  const more = pending.length > shown.length ? ` and ${pending.length - shown.length} more` : '';
  return `${shown.join(', ')}${more}`;
}

/** The condition to patch, or undefined when the pod already shows this decision. */
export function conditionFor(
  decision: GateDecision,
  current: PodCondition | undefined,
  now: string,
): PodCondition | undefined {
  if (
    current?.status === decision.status &&
    current.reason === decision.reason &&
    current.message === decision.message
  ) {
    return undefined;
  }
  return {
    type: WARM_CONDITION,
    status: decision.status,
    reason: decision.reason,
    message: decision.message,
    lastTransitionTime: current?.status === decision.status ? current.lastTransitionTime : now,
    lastProbeTime: null,
  };
}
