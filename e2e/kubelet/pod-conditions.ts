import type { ContainerStatus, Pod, PodCondition, PodStatus } from './pod-types.ts';

/**
 * The pod conditions a kubelet owns, computed the way the kubelet computes them
 * (pkg/kubelet/status/generate.go): the same rules, reasons and messages, so what the
 * operator and the tests see is what a real node would report.
 *
 * Ready = ContainersReady AND every `spec.readinessGates` condition True. The gate conditions
 * themselves belong to whoever writes them (here the operator's `gitmirror.dev/warm`); the
 * kubelet only reads them.
 */

export const KUBELET_CONDITIONS = ['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready'];

type Phase = NonNullable<PodStatus['phase']>;

function isRestartableInit(container: { restartPolicy?: string }): boolean {
  return container.restartPolicy === 'Always';
}

/** Go's `%s` of a []string: `[a b]`. */
function goList(names: string[]): string {
  return `[${names.join(' ')}]`;
}

export function containersReadyCondition(
  pod: Pod,
  statuses: { init: ContainerStatus[]; regular: ContainerStatus[] },
  phase: Phase,
): PodCondition {
  const unknown: string[] = [];
  const unready: string[] = [];
  const check = (name: string, list: ContainerStatus[]) => {
    const status = list.find((s) => s.name === name);
    if (!status) unknown.push(name);
    else if (!status.ready) unready.push(name);
  };
  for (const c of pod.spec.initContainers ?? []) if (isRestartableInit(c)) check(c.name, statuses.init);
  for (const c of pod.spec.containers) check(c.name, statuses.regular);
  if ((phase === 'Succeeded' && unknown.length === 0) || phase === 'Failed') {
    return {
      type: 'ContainersReady',
      status: 'False',
      reason: phase === 'Succeeded' ? 'PodCompleted' : 'PodFailed',
    };
  }
  const messages: string[] = [];
  if (unknown.length > 0) messages.push(`containers with unknown status: ${goList(unknown)}`);
  if (unready.length > 0) messages.push(`containers with unready status: ${goList(unready)}`);
  if (messages.length > 0) {
    return {
      type: 'ContainersReady',
      status: 'False',
      reason: 'ContainersNotReady',
      message: messages.join(', '),
    };
  }
  return { type: 'ContainersReady', status: 'True' };
}

export function readyCondition(
  pod: Pod,
  containersReady: PodCondition,
  currentConditions: PodCondition[],
): PodCondition {
  if (containersReady.status !== 'True') {
    return {
      type: 'Ready',
      status: containersReady.status,
      reason: containersReady.reason,
      message: containersReady.message,
    };
  }
  const messages: string[] = [];
  for (const gate of pod.spec.readinessGates ?? []) {
    const condition = currentConditions.find((c) => c.type === gate.conditionType);
    if (!condition) {
      messages.push(`corresponding condition of pod readiness gate "${gate.conditionType}" does not exist.`);
    } else if (condition.status !== 'True') {
      messages.push(
        `the status of pod readiness gate "${gate.conditionType}" is not "True", but ${condition.status}`,
      );
    }
  }
  if (messages.length > 0) {
    return { type: 'Ready', status: 'False', reason: 'ReadinessGatesNotReady', message: messages.join(', ') };
  }
  return { type: 'Ready', status: 'True' };
}

export function initializedCondition(
  pod: Pod,
  statuses: { init: ContainerStatus[]; regular: ContainerStatus[] },
  phase: Phase,
): PodCondition {
  const unknown: string[] = [];
  const incomplete: string[] = [];
  for (const c of pod.spec.initContainers ?? []) {
    const status = statuses.init.find((s) => s.name === c.name);
    if (!status) unknown.push(c.name);
    else if (isRestartableInit(c) ? !status.started : status.state.terminated?.exitCode !== 0) {
      incomplete.push(c.name);
    }
  }
  if (phase === 'Succeeded' && unknown.length === 0) {
    return { type: 'Initialized', status: 'True', reason: 'PodCompleted' };
  }
  // A regular container that started means initialization finished earlier, even if a
  // restartable init container is restarting now.
  const regularStarted = statuses.regular.some((s) => s.started || s.state.running || s.state.terminated);
  if (regularStarted) return { type: 'Initialized', status: 'True' };
  const messages: string[] = [];
  if (unknown.length > 0) messages.push(`containers with unknown status: ${goList(unknown)}`);
  if (incomplete.length > 0) messages.push(`containers with incomplete status: ${goList(incomplete)}`);
  if (messages.length > 0) {
    return {
      type: 'Initialized',
      status: 'False',
      reason: 'ContainersNotInitialized',
      message: messages.join(', '),
    };
  }
  return { type: 'Initialized', status: 'True' };
}

/**
 * The kubelet-owned conditions, each keeping its `lastTransitionTime` unless its status
 * flipped (as the kubelet's status manager does).
 */
export function kubeletConditions(
  pod: Pod,
  statuses: { init: ContainerStatus[]; regular: ContainerStatus[] },
  phase: Phase,
  sandboxReady: boolean,
  now: string,
): PodCondition[] {
  const current = pod.status?.conditions ?? [];
  const containersReady = containersReadyCondition(pod, statuses, phase);
  const computed: PodCondition[] = [
    { type: 'PodReadyToStartContainers', status: sandboxReady ? 'True' : 'False' },
    initializedCondition(pod, statuses, phase),
    containersReady,
    readyCondition(pod, containersReady, current),
  ];
  return computed.map((condition) => {
    const previous = current.find((c) => c.type === condition.type);
    const lastTransitionTime =
      previous && previous.status === condition.status ? (previous.lastTransitionTime ?? now) : now;
    return { ...condition, lastProbeTime: null, lastTransitionTime };
  });
}
