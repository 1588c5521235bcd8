import type { GitMirror } from '../api/gitmirror.ts';
import type { EventInput, Lease, Pod, PodCondition } from '../api/kubernetes.ts';

/**
 * The seam between the reconcilers and Kubernetes. The real implementation wraps
 * @kubernetes/client-node (client-node-api.ts); unit tests use an in-memory fake cluster.
 * Every method throws OperatorError with a KUBE_* code.
 */
export interface KubeApi {
  /** JSON-merge-patches the GitMirror status subresource (null removes a field). */
  patchGitMirrorStatus(namespace: string, name: string, patch: Record<string, unknown>): Promise<void>;
  /**
   * Replaces metadata.finalizers, guarded by resourceVersion: KUBE_CONFLICT when the object
   * changed since it was read.
   */
  setGitMirrorFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion: string,
  ): Promise<GitMirror>;
  /** The Secret's decoded data, or undefined when it does not exist. */
  readSecret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** Creates an Opaque Secret; KUBE_ALREADY_EXISTS when one has that name. */
  createSecret(
    namespace: string,
    name: string,
    data: Record<string, string>,
    labels: Record<string, string>,
  ): Promise<void>;
  /**
   * Sets one condition in pods/status with a strategic-merge patch that carries only that
   * condition and the pod's uid, so a re-created pod of the same name is never patched.
   */
  patchPodCondition(namespace: string, name: string, uid: string, condition: PodCondition): Promise<void>;
  createEvent(event: EventRecord): Promise<void>;
  readLease(namespace: string, name: string): Promise<Lease | undefined>;
  createLease(namespace: string, lease: Lease): Promise<Lease>;
  /** Replaces the Lease guarded by its metadata.resourceVersion; KUBE_CONFLICT on a race. */
  replaceLease(namespace: string, lease: Lease): Promise<Lease>;
}

export interface EventRecord extends EventInput {
  eventTime: Date;
  reportingController: string;
  reportingInstance: string;
}

/** Read access to an informer cache. Objects are shared: never mutate them. */
export interface Store<T> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): readonly T[];
}

export interface Stores {
  gitMirrors: Store<GitMirror>;
  pods: Store<Pod>;
}

/** What the operator needs of a client-node ListWatch (and what a test double provides). */
export interface InformerLike<T> {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void;
  on(verb: 'error' | 'connect', cb: (err?: unknown) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): readonly T[];
}
