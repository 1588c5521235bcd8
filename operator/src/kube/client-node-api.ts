import { randomBytes } from 'node:crypto';
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node';
import { type GitMirror, GROUP, PLURAL, VERSION } from '../api/gitmirror.ts';
import type { Lease, PodCondition } from '../api/kubernetes.ts';
import { OperatorError, type OperatorErrorCode } from '../errors/operator-error.ts';
import type { EventRecord, KubeApi } from './api.ts';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
// Pods' status.conditions merge on `type` only under a strategic-merge patch; a JSON merge
// patch would replace the whole list and race the kubelet's own conditions.
const strategicMergePatch = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

/** KubeApi over @kubernetes/client-node 2.x. */
export class ClientNodeKubeApi implements KubeApi {
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #coordination: CoordinationV1Api;
  readonly #events: EventsV1Api;

  constructor(kubeConfig: KubeConfig) {
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
    this.#custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#coordination = kubeConfig.makeApiClient(CoordinationV1Api);
    this.#events = kubeConfig.makeApiClient(EventsV1Api);
  }

  async patchGitMirrorStatus(namespace: string, name: string, patch: Record<string, unknown>): Promise<void> {
    const target = {
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace,
      name,
      body: { status: patch },
    };
    await call(`patch status of gitmirror ${namespace}/${name}`, () =>
      this.#custom.patchNamespacedCustomObjectStatus(target, mergePatch),
    );
  }

  async setGitMirrorFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion: string,
  ): Promise<GitMirror> {
    // resourceVersion in a merge patch is a precondition: the server answers 409 if it moved.
    const body = { metadata: { finalizers, resourceVersion } };
    const target = { group: GROUP, version: VERSION, plural: PLURAL, namespace, name, body };
    return (await call(`update finalizers of gitmirror ${namespace}/${name}`, () =>
      this.#custom.patchNamespacedCustomObject(target, mergePatch),
    )) as GitMirror;
  }

  async readSecret(namespace: string, name: string): Promise<Record<string, string> | undefined> {
    try {
      const secret = await call(`read secret ${namespace}/${name}`, () =>
        this.#core.readNamespacedSecret({ namespace, name }),
      );
      const data: Record<string, string> = {};
      for (const [key, value] of Object.entries(secret.data ?? {})) {
        data[key] = Buffer.from(value, 'base64').toString('utf8');
      }
      return data;
    } catch (err) {
      if (err instanceof OperatorError && err.code === 'KUBE_NOT_FOUND') return undefined;
      throw err;
    }
  }

  async createSecret(
    namespace: string,
    name: string,
    data: Record<string, string>,
    labels: Record<string, string>,
  ): Promise<void> {
    const encoded = Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]),
    );
    const body = { metadata: { name, namespace, labels }, type: 'Opaque', data: encoded };
    await call(`create secret ${namespace}/${name}`, () =>
      this.#core.createNamespacedSecret({ namespace, body }),
    );
  }

  async patchPodCondition(namespace: string, name: string, uid: string, condition: PodCondition) {
    const body = { metadata: { uid }, status: { conditions: [condition] } };
    await call(`patch status of pod ${namespace}/${name}`, () =>
      this.#core.patchNamespacedPodStatus({ namespace, name, body }, strategicMergePatch),
    );
  }

  async createEvent(event: EventRecord): Promise<void> {
    const namespace = event.regarding.namespace;
    const body = {
      metadata: { name: `${event.regarding.name}.${randomBytes(8).toString('hex')}`, namespace },
      // MicroTime: a plain Date serialises with milliseconds, which the API server rejects.
      eventTime: new V1MicroTime(event.eventTime.getTime()),
      reportingController: event.reportingController,
      reportingInstance: event.reportingInstance,
      action: event.action,
      reason: event.reason,
      type: event.type,
      note: event.note.slice(0, 1024),
      regarding: event.regarding,
    };
    await call(`create event for ${namespace}/${event.regarding.name}`, () =>
      this.#events.createNamespacedEvent({ namespace, body }),
    );
  }

  async readLease(namespace: string, name: string): Promise<Lease | undefined> {
    try {
      const lease = await call(`read lease ${namespace}/${name}`, () =>
        this.#coordination.readNamespacedLease({ namespace, name }),
      );
      return fromV1Lease(lease);
    } catch (err) {
      if (err instanceof OperatorError && err.code === 'KUBE_NOT_FOUND') return undefined;
      throw err;
    }
  }

  async createLease(namespace: string, lease: Lease): Promise<Lease> {
    const created = await call(`create lease ${namespace}/${lease.metadata.name}`, () =>
      this.#coordination.createNamespacedLease({ namespace, body: toV1Lease(lease) }),
    );
    return fromV1Lease(created);
  }

  async replaceLease(namespace: string, lease: Lease): Promise<Lease> {
    const name = lease.metadata.name;
    const replaced = await call(`update lease ${namespace}/${name}`, () =>
      this.#coordination.replaceNamespacedLease({ namespace, name, body: toV1Lease(lease) }),
    );
    return fromV1Lease(replaced);
  }
}

function toV1Lease(lease: Lease): V1Lease {
  const micro = (d: Date | undefined) => (d === undefined ? undefined : new V1MicroTime(d.getTime()));
  return {
    metadata: lease.metadata,
    spec: {
      ...lease.spec,
      acquireTime: micro(lease.spec.acquireTime),
      renewTime: micro(lease.spec.renewTime),
    },
  } as V1Lease;
}

function fromV1Lease(lease: V1Lease): Lease {
  // client-node does not deserialise MicroTime: the fields arrive as strings.
  const time = (value: unknown) =>
    value === undefined || value === null ? undefined : new Date(String(value));
  const spec = lease.spec ?? {};
  return {
    metadata: {
      name: lease.metadata?.name ?? '',
      namespace: lease.metadata?.namespace,
      resourceVersion: lease.metadata?.resourceVersion,
    },
    spec: {
      holderIdentity: spec.holderIdentity,
      leaseDurationSeconds: spec.leaseDurationSeconds,
      acquireTime: time(spec.acquireTime),
      renewTime: time(spec.renewTime),
      leaseTransitions: spec.leaseTransitions,
    },
  };
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toOperatorError(what, err);
  }
}

/**
 * Maps client-node failures to stable codes. The message is built from the API server's
 * Status `message` and `reason` only: ApiException's own message embeds the whole response,
 * headers included.
 */
export function toOperatorError(what: string, err: unknown): OperatorError {
  if (!(err instanceof ApiException)) {
    const detail = err instanceof Error ? err.message : String(err);
    return new OperatorError('KUBE_UNAVAILABLE', `${what}: ${detail}`, { cause: err });
  }
  const status = parseStatus(err.body);
  const code = codeFor(err.code, status.reason);
  const message = `${what}: ${err.code} ${status.reason ?? ''} ${status.message ?? ''}`.trim();
  return new OperatorError(code, message, { status: err.code, remoteCode: status.reason });
}

function codeFor(httpStatus: number, reason: string | undefined): OperatorErrorCode {
  if (httpStatus === 404) return 'KUBE_NOT_FOUND';
  if (httpStatus === 409) return reason === 'AlreadyExists' ? 'KUBE_ALREADY_EXISTS' : 'KUBE_CONFLICT';
  if (httpStatus === 401 || httpStatus === 403) return 'KUBE_FORBIDDEN';
  if (httpStatus === 400 || httpStatus === 422 || httpStatus === 415) return 'KUBE_INVALID';
  return 'KUBE_UNAVAILABLE';
}

function parseStatus(body: unknown): { reason?: string; message?: string } {
  let value = body;
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body);
    } catch {
      return {};
    }
  }
  if (typeof value !== 'object' || value === null) return {};
  const { reason, message } = value as { reason?: unknown; message?: unknown };
  return {
    reason: typeof reason === 'string' ? reason : undefined,
    message: typeof message === 'string' ? message.slice(0, 500) : undefined,
  };
}
