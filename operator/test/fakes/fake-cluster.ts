import {
  CACHE_LABEL,
  type GitMirror,
  type GitMirrorSpec,
  keyOf,
  WARM_CONDITION,
} from '../../src/api/gitmirror.ts';
import type { Lease, Pod, PodCondition } from '../../src/api/kubernetes.ts';
import { OperatorError, type OperatorErrorCode } from '../../src/errors/operator-error.ts';
import type { EventRecord, KubeApi, Store, Stores } from '../../src/kube/api.ts';

/** An informer cache stand-in: objects are replaced, never mutated, as with a real watch. */
export class MemoryStore<T extends { metadata: { name: string; namespace?: string } }> implements Store<T> {
  readonly #objects = new Map<string, T>();
  /** Told of every put and delete, as a watch would be. */
  readonly listeners: ((obj: T) => void)[] = [];

  get(namespace: string, name: string): T | undefined {
    return this.#objects.get(`${namespace}/${name}`);
  }

  list(namespace?: string): readonly T[] {
    return [...this.#objects.values()].filter(
      (o) => namespace === undefined || o.metadata.namespace === namespace,
    );
  }

  put(obj: T): void {
    this.#objects.set(keyOf(obj.metadata), obj);
    for (const listener of this.listeners) listener(obj);
  }

  delete(namespace: string, name: string): void {
    const obj = this.get(namespace, name);
    this.#objects.delete(`${namespace}/${name}`);
    if (obj) for (const listener of this.listeners) listener(obj);
  }
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

export interface PodOptions {
  namespace?: string;
  cache?: string;
  ip?: string;
  phase?: string;
  createdAt?: string;
  startedAt?: string;
  conditions?: PodCondition[];
  adminPort?: number;
}

let uidCounter = 0;

/**
 * An in-memory Kubernetes for reconciler tests: the KubeApi the operator writes through and the
 * stores it reads from, with the API server's behaviour where the operator relies on it
 * (resourceVersion preconditions, the uid precondition of pod patches, finalizers holding a
 * delete, merge-patch semantics of status).
 */
export class FakeCluster implements KubeApi {
  readonly gitMirrors = new MemoryStore<GitMirror>();
  readonly pods = new MemoryStore<Pod>();
  readonly secrets = new Map<string, Record<string, string>>();
  readonly leases = new Map<string, Lease>();
  readonly events: EventRecord[] = [];
  /** Bodies of pod status patches, to check they carry only the warm condition. */
  readonly podPatches: { pod: string; uid: string; condition: PodCondition }[] = [];
  readonly statusPatches: { key: string; patch: Record<string, unknown> }[] = [];
  /** Errors to throw from the next call of a method, once each. */
  readonly failures = new Map<keyof KubeApi, OperatorError[]>();
  #rv = 100;

  get stores(): Stores {
    return { gitMirrors: this.gitMirrors, pods: this.pods };
  }

  failNext(method: keyof KubeApi, code: OperatorErrorCode, message = `injected ${code}`): void {
    const list = this.failures.get(method) ?? [];
    list.push(new OperatorError(code, message));
    this.failures.set(method, list);
  }

  #maybeFail(method: keyof KubeApi): void {
    const err = this.failures.get(method)?.shift();
    if (err) throw err;
  }

  #nextRv(): string {
    return String(++this.#rv);
  }

  addGitMirror(name: string, spec: Partial<GitMirrorSpec> & { url: string }, namespace = 'ns'): GitMirror {
    const gm: GitMirror = {
      apiVersion: 'gitmirror.dev/v1alpha1',
      kind: 'GitMirror',
      metadata: {
        name,
        namespace,
        uid: `uid-gm-${++uidCounter}`,
        generation: 1,
        resourceVersion: this.#nextRv(),
        creationTimestamp: '2026-01-01T00:00:00Z',
      },
      spec: {
        cache: 'default',
        fetchInterval: '5m',
        ...spec,
        snapshot: { interval: '1h', retain: 3, ...spec.snapshot },
        warmup: { timeout: '10m', onTimeout: 'Open', ...spec.warmup },
        lfs: { prefetch: 'None', ...spec.lfs },
      },
    };
    this.gitMirrors.put(gm);
    return gm;
  }

  updateGitMirror(namespace: string, name: string, change: (gm: GitMirror) => GitMirror): GitMirror {
    const current = this.gitMirrors.get(namespace, name);
    if (!current) throw new Error(`no gitmirror ${namespace}/${name}`);
    const next = change(structuredClone(current));
    next.metadata.resourceVersion = this.#nextRv();
    this.gitMirrors.put(next);
    return next;
  }

  /** kubectl delete: with finalizers the object only gets a deletionTimestamp. */
  deleteGitMirror(namespace: string, name: string, at = '2026-01-01T01:00:00Z'): void {
    const gm = this.gitMirrors.get(namespace, name);
    if (!gm) return;
    if (!gm.metadata.finalizers?.length) this.gitMirrors.delete(namespace, name);
    else
      this.updateGitMirror(namespace, name, (o) => ({
        ...o,
        metadata: { ...o.metadata, deletionTimestamp: at },
      }));
  }

  addPod(name: string, options: PodOptions = {}): Pod {
    const n = ++uidCounter;
    const pod: Pod = {
      metadata: {
        name,
        namespace: options.namespace ?? 'ns',
        uid: `uid-pod-${n}`,
        resourceVersion: this.#nextRv(),
        creationTimestamp: options.createdAt ?? '2026-01-01T00:00:00Z',
        labels: { [CACHE_LABEL]: options.cache ?? 'default' },
      },
      spec: {
        containers: [
          {
            name: 'sidecar',
            ports: options.adminPort ? [{ name: 'gitmirror-admin', containerPort: options.adminPort }] : [],
          },
        ],
        readinessGates: [{ conditionType: WARM_CONDITION }],
      },
      status: {
        phase: options.phase ?? 'Running',
        podIP: options.ip ?? `10.0.0.${n % 250}`,
        startTime: options.startedAt ?? options.createdAt ?? '2026-01-01T00:00:00Z',
        conditions: options.conditions ?? [{ type: 'Ready', status: 'False' }],
      },
    };
    this.pods.put(pod);
    return pod;
  }

  updatePod(namespace: string, name: string, change: (pod: Pod) => Pod): Pod {
    const current = this.pods.get(namespace, name);
    if (!current) throw new Error(`no pod ${namespace}/${name}`);
    const next = change(structuredClone(current));
    next.metadata.resourceVersion = this.#nextRv();
    this.pods.put(next);
    return next;
  }

  /** What the kubelet does after the gate opens: Ready once every gate condition is True. */
  markReadyIfGatesTrue(namespace: string, name: string): void {
    this.updatePod(namespace, name, (pod) => {
      const gates = pod.spec?.readinessGates ?? [];
      const ok = gates.every((g) =>
        pod.status?.conditions?.some((c) => c.type === g.conditionType && c.status === 'True'),
      );
      const conditions = (pod.status?.conditions ?? []).filter((c) => c.type !== 'Ready');
      conditions.push({ type: 'Ready', status: ok ? 'True' : 'False' });
      return { ...pod, status: { ...pod.status, conditions } };
    });
  }

  async patchGitMirrorStatus(namespace: string, name: string, patch: Record<string, unknown>): Promise<void> {
    this.#maybeFail('patchGitMirrorStatus');
    this.statusPatches.push({ key: `${namespace}/${name}`, patch: structuredClone(patch) });
    this.updateGitMirror(namespace, name, (gm) => ({
      ...gm,
      status: mergePatch(gm.status ?? {}, patch) as GitMirror['status'],
    }));
  }

  async setGitMirrorFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion: string,
  ): Promise<GitMirror> {
    this.#maybeFail('setGitMirrorFinalizers');
    const current = this.gitMirrors.get(namespace, name);
    if (!current) throw new OperatorError('KUBE_NOT_FOUND', `gitmirror ${namespace}/${name} not found`);
    if (current.metadata.resourceVersion !== resourceVersion) {
      throw new OperatorError('KUBE_CONFLICT', 'the object has been modified');
    }
    const next = this.updateGitMirror(namespace, name, (gm) => ({
      ...gm,
      metadata: { ...gm.metadata, finalizers },
    }));
    if (next.metadata.deletionTimestamp && finalizers.length === 0) this.gitMirrors.delete(namespace, name);
    return structuredClone(next);
  }

  async readSecret(namespace: string, name: string): Promise<Record<string, string> | undefined> {
    this.#maybeFail('readSecret');
    const data = this.secrets.get(`${namespace}/${name}`);
    return data ? { ...data } : undefined;
  }

  async createSecret(namespace: string, name: string, data: Record<string, string>): Promise<void> {
    this.#maybeFail('createSecret');
    if (this.secrets.has(`${namespace}/${name}`)) {
      throw new OperatorError('KUBE_ALREADY_EXISTS', `secret ${namespace}/${name} already exists`);
    }
    this.secrets.set(`${namespace}/${name}`, { ...data });
  }

  async patchPodCondition(
    namespace: string,
    name: string,
    uid: string,
    condition: PodCondition,
  ): Promise<void> {
    this.#maybeFail('patchPodCondition');
    const pod = this.pods.get(namespace, name);
    if (!pod) throw new OperatorError('KUBE_NOT_FOUND', `pod ${namespace}/${name} not found`);
    if (pod.metadata.uid !== uid)
      throw new OperatorError('KUBE_CONFLICT', 'Precondition failed: UID in precondition');
    this.podPatches.push({ pod: `${namespace}/${name}`, uid, condition: structuredClone(condition) });
    this.updatePod(namespace, name, (p) => {
      const others = (p.status?.conditions ?? []).filter((c) => c.type !== condition.type);
      return { ...p, status: { ...p.status, conditions: [...others, condition] } };
    });
  }

  async createEvent(event: EventRecord): Promise<void> {
    this.#maybeFail('createEvent');
    this.events.push(event);
  }

  async readLease(namespace: string, name: string): Promise<Lease | undefined> {
    this.#maybeFail('readLease');
    const lease = this.leases.get(`${namespace}/${name}`);
    return lease ? structuredClone(lease) : undefined;
  }

  async createLease(namespace: string, lease: Lease): Promise<Lease> {
    this.#maybeFail('createLease');
    const key = `${namespace}/${lease.metadata.name}`;
    if (this.leases.has(key)) throw new OperatorError('KUBE_ALREADY_EXISTS', 'lease exists');
    const stored = {
      ...structuredClone(lease),
      metadata: { ...lease.metadata, resourceVersion: this.#nextRv() },
    };
    this.leases.set(key, stored);
    return structuredClone(stored);
  }

  async replaceLease(namespace: string, lease: Lease): Promise<Lease> {
    this.#maybeFail('replaceLease');
    const key = `${namespace}/${lease.metadata.name}`;
    const current = this.leases.get(key);
    if (!current) throw new OperatorError('KUBE_NOT_FOUND', 'no lease');
    if (current.metadata.resourceVersion !== lease.metadata.resourceVersion) {
      throw new OperatorError('KUBE_CONFLICT', 'lease modified');
    }
    const stored = {
      ...structuredClone(lease),
      metadata: { ...lease.metadata, resourceVersion: this.#nextRv() },
    };
    this.leases.set(key, stored);
    return structuredClone(stored);
  }
}
