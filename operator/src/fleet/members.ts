import { ADMIN_PORT_NAME, CACHE_LABEL, type GitMirror, WARM_CONDITION } from '../api/gitmirror.ts';
import type { Pod, PodCondition } from '../api/kubernetes.ts';
import type { Store } from '../kube/api.ts';
import type { SidecarTarget } from '../sidecar/admin-client.ts';

/** The fleet a pod belongs to (its gitmirror.dev/cache label), if any. */
export function fleetOf(pod: Pod): string | undefined {
  return pod.metadata.labels?.[CACHE_LABEL];
}

/** A sidecar we can talk to: running with an IP. Terminating pods still count here. */
export function isReachable(pod: Pod): boolean {
  return pod.status?.phase === 'Running' && Boolean(pod.status.podIP);
}

/** A fleet member carries the fleet's mirrors: labelled, running with an IP, not terminating. */
export function isFleetMember(pod: Pod): boolean {
  return fleetOf(pod) !== undefined && isReachable(pod) && !pod.metadata.deletionTimestamp;
}

/** Every pod of one fleet in the cache, members or not. */
export function fleetPods(pods: Store<Pod>, namespace: string, cache: string): Pod[] {
  return pods.list(namespace).filter((pod) => fleetOf(pod) === cache);
}

/** The GitMirrors a fleet carries; those being deleted are no longer handed out. */
export function mirrorsOfFleet(gitMirrors: Store<GitMirror>, namespace: string, cache: string): GitMirror[] {
  return gitMirrors
    .list(namespace)
    .filter((gm) => gm.spec.cache === cache && !gm.metadata.deletionTimestamp)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/** When the pod started, for warm-up deadlines: status.startTime, else its creation. */
export function podStartMs(pod: Pod): number {
  return Date.parse(pod.status?.startTime ?? pod.metadata.creationTimestamp ?? '') || 0;
}

export function warmCondition(pod: Pod): PodCondition | undefined {
  return pod.status?.conditions?.find((c) => c.type === WARM_CONDITION);
}

export function isPodReady(pod: Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** `http://<podIP>:<port>`; a container port named gitmirror-admin overrides the default port. */
export function sidecarTarget(pod: Pod, defaultPort: number, token: string): SidecarTarget {
  const named = pod.spec?.containers
    ?.flatMap((c) => c.ports ?? [])
    .find((p) => p.name === ADMIN_PORT_NAME)?.containerPort;
  const ip = pod.status?.podIP ?? '';
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return {
    baseUrl: `http://${host}:${named ?? defaultPort}`,
    token,
    pod: `${pod.metadata.namespace}/${pod.metadata.name}`,
  };
}
