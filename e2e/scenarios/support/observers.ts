import { setTimeout as sleep } from 'node:timers/promises';
import type { Pod } from '../../kubelet/pod-types.ts';
import { type Environment, NAMESPACE } from './environment.ts';
import { cloneThrough, fleetPods, isReady, kubectlJson, podsWithLabel, sidecarMirrors } from './gitmirror.ts';

/**
 * Background observers that sample the fleet for the whole length of a scenario step and
 * report every sample that broke an invariant. Each runs until `stop()`, which returns what it
 * saw; a step asserts on that report.
 */

export const FLEET_SERVICE = 'gitmirror-cache';

interface Observer<T> {
  stop(): Promise<T>;
}

function observe<S>(state: S, sample: (state: S) => Promise<void>, intervalMs: number): Observer<S> {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sample(state);
      await sleep(intervalMs);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return state;
    },
  };
}

interface EndpointSlice {
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean }; targetRef?: { name: string } }[];
}

/** Pod names the Service's EndpointSlices (kube-controller-manager's) list as ready. */
export async function readyEndpoints(env: Environment): Promise<{ pod: string; ip: string }[]> {
  const slices = await kubectlJson<{ items: EndpointSlice[] }>(env, [
    'get',
    'endpointslices',
    '-n',
    NAMESPACE,
    '-l',
    `kubernetes.io/service-name=${FLEET_SERVICE}`,
  ]);
  return slices.items.flatMap((slice) =>
    (slice.endpoints ?? [])
      .filter((e) => e.conditions?.ready === true && e.targetRef)
      .map((e) => ({ pod: e.targetRef!.name, ip: e.addresses[0]! })),
  );
}

export interface GateReport {
  samples: number;
  violations: string[];
  /** Pods seen not Ready in some sample (so the gate visibly held them back). */
  seenUnready: Set<string>;
  /** The fewest Ready, non-terminating pods in any sample. */
  minReady: number;
  errors: number;
}

/**
 * "Ready implies warm": in every sample, each pod the Service's EndpointSlices call ready is a
 * Ready pod, and each Ready pod's sidecar has every mirror in `mirrorIds()` ready. Slices are
 * read before pods and pods before sidecars: each of those only moves towards ready during a
 * scale-up, so a violation seen this way is a real one.
 */
export function watchReadyImpliesWarm(env: Environment, mirrorIds: () => string[]): Observer<GateReport> {
  const report: GateReport = {
    samples: 0,
    violations: [],
    seenUnready: new Set(),
    minReady: Infinity,
    errors: 0,
  };
  return observe(
    report,
    async (r) => {
      try {
        const endpoints = await readyEndpoints(env);
        const pods = await fleetPods(env);
        const live = pods.filter((p) => !p.metadata.deletionTimestamp);
        for (const e of endpoints) {
          const pod = pods.find((p) => p.metadata.name === e.pod);
          if (pod && !isReady(pod) && !pod.metadata.deletionTimestamp) {
            r.violations.push(`${e.pod} is a ready endpoint but not a Ready pod`);
          }
        }
        r.minReady = Math.min(r.minReady, live.filter(isReady).length);
        for (const pod of live) await checkWarm(env, pod, mirrorIds(), r);
        r.samples++;
      } catch {
        r.errors++;
      }
    },
    300,
  );
}

async function checkWarm(env: Environment, pod: Pod, ids: string[], report: GateReport): Promise<void> {
  const name = pod.metadata.name;
  if (!isReady(pod)) {
    report.seenUnready.add(name);
    return;
  }
  const mirrors = await sidecarMirrors(env, name);
  for (const id of ids) {
    const mirror = mirrors.find((m) => m.id === id);
    if (!mirror?.ready) {
      report.violations.push(`${name} is Ready while mirror ${id} is ${mirror ? mirror.state : 'absent'}`);
    }
  }
}

export interface WriterReport {
  samples: number;
  violations: string[];
}

/** "Never two snapshot writers for one mirror", sampled across every fleet pod. */
export function watchSingleWriter(env: Environment, mirrorIds: () => string[]): Observer<WriterReport> {
  return observe<WriterReport>(
    { samples: 0, violations: [] },
    async (r) => {
      const writers = new Map<string, string[]>();
      try {
        for (const pod of await fleetPods(env)) {
          if (!pod.status?.podIP) continue;
          const mirrors = await sidecarMirrors(env, pod.metadata.name).catch(() => []);
          for (const m of mirrors) {
            if (m.snapshot.writer) writers.set(m.id, [...(writers.get(m.id) ?? []), pod.metadata.name]);
          }
        }
        for (const id of mirrorIds()) {
          const list = writers.get(id) ?? [];
          if (list.length > 1) r.violations.push(`${id}: writers ${list.join(', ')}`);
        }
        r.samples++;
      } catch {
        // A sample that could not be taken proves nothing either way.
      }
    },
    300,
  );
}

export interface CloneReport {
  ok: number;
  failures: string[];
}

/**
 * A client that clones again and again through the Service the way kube-proxy would route it:
 * each clone goes to a ready endpoint of the Service's EndpointSlices (round robin).
 */
export function cloneContinuously(env: Environment, repos: string[]): Observer<CloneReport> {
  let turn = 0;
  return observe<CloneReport>(
    { ok: 0, failures: [] },
    async (r) => {
      const endpoints = await readyEndpoints(env).catch(() => []);
      if (endpoints.length === 0) {
        r.failures.push('the Service had no ready endpoint');
        return;
      }
      const endpoint = endpoints[turn % endpoints.length]!;
      const repo = repos[turn % repos.length]!;
      turn++;
      try {
        await cloneThrough(env, endpoint.pod, repo, endpoint.ip);
        r.ok++;
      } catch (err) {
        r.failures.push(`${repo} via ${endpoint.pod}: ${(err as Error).message}`);
      }
    },
    100,
  );
}

export interface NotReadyReport {
  samples: number;
  /** Samples that could not be taken (the API server was down, say). */
  errors: number;
  /** The longest stretch each pod was seen not Ready, from the first such sample to the last. */
  longestMs: Map<string, number>;
  violations: string[];
}

/**
 * "No pod stuck NotReady": samples the pods matching each label selector and measures, per
 * pod, each stretch from the first sample that saw it not Ready to the first that saw it
 * Ready again. A stretch longer than `maxMs` is a violation; a pod still not Ready when the
 * observer stops is measured up to then. Terminating pods are not judged.
 */
export function watchNotReady(
  env: Environment,
  selectors: string[],
  maxMs: number,
): Observer<NotReadyReport> {
  const since = new Map<string, number>();
  const report: NotReadyReport = { samples: 0, errors: 0, longestMs: new Map(), violations: [] };
  const judge = (r: NotReadyReport, name: string, now: number) => {
    const start = since.get(name);
    if (start === undefined) return;
    const stretch = now - start;
    r.longestMs.set(name, Math.max(r.longestMs.get(name) ?? 0, stretch));
    if (stretch > maxMs && !r.violations.some((v) => v.startsWith(`${name} `))) {
      r.violations.push(`${name} not Ready for more than ${maxMs} ms`);
    }
  };
  const observer = observe(
    report,
    async (r) => {
      try {
        const pods: Pod[] = [];
        for (const selector of selectors) pods.push(...(await podsWithLabel(env, selector)));
        const now = Date.now();
        for (const pod of pods) {
          const name = pod.metadata.name;
          if (pod.metadata.deletionTimestamp) {
            since.delete(name);
            continue;
          }
          if (isReady(pod)) {
            judge(r, name, now);
            since.delete(name);
          } else {
            if (!since.has(name)) since.set(name, now);
            judge(r, name, now);
          }
        }
        r.samples++;
      } catch {
        r.errors++;
      }
    },
    1000,
  );
  return {
    stop: async () => {
      const r = await observer.stop();
      for (const name of since.keys()) judge(r, name, Date.now());
      return r;
    },
  };
}
