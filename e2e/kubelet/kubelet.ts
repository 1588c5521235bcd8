import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isNotFound, KubeClient, KubeError, type KubeIdentity, listWatch } from '../cluster/kube-client.ts';
import type { PodNetwork } from '../cluster/network.ts';
import type { NodeImage } from './image.ts';
import { KUBELET_CONDITIONS } from './pod-conditions.ts';
import type { ContainerState, Pod, PodStatus } from './pod-types.ts';
import { type PodEnvironment, type PodSources, PodWorker } from './pod-worker.ts';

/**
 * The test kubelet: one Node, and every pod bound to it run as real processes (see
 * pod-worker.ts). It talks to the API server as `system:node:<name>`, so the Node authorizer
 * and NodeRestriction admission limit it to what a real kubelet may do: its own Node, pods
 * bound to it, and the Secrets, ConfigMaps and service-account tokens those pods reference.
 * Binding pending pods to the node is the scheduler's job (cluster/scheduler.ts).
 */

export interface KubeletOptions {
  nodeName: string;
  node: KubeIdentity;
  network: PodNetwork;
  image: NodeImage;
  apiserver: { host: string; port: number };
  runDir: string;
  log?: (message: string) => void;
}

/** Volume refresh and the local-storage eviction check: the kubelet housekeeps every 10 s too. */
const REFRESH_INTERVAL_MS = 10_000;

export class TestKubelet {
  private readonly node: KubeClient;
  private readonly workers = new Map<string, PodWorker>();
  private readonly abort = new AbortController();
  private readonly podsDir: string;
  private refreshTimer: NodeJS.Timeout | undefined;
  private readonly log: (message: string) => void;

  private readonly options: KubeletOptions;

  constructor(options: KubeletOptions) {
    this.options = options;
    this.node = new KubeClient(options.node);
    this.podsDir = join(options.runDir, 'pods');
    this.log = options.log ?? (() => {});
  }

  async start(): Promise<void> {
    await mkdir(this.podsDir, { recursive: true });
    await this.registerNode();
    const signal = this.abort.signal;
    const nodeName = encodeURIComponent(this.options.nodeName);
    void listWatch<Pod>(
      this.node,
      `/api/v1/pods?fieldSelector=spec.nodeName%3D${nodeName}`,
      {
        sync: (pods) => this.syncPods(pods),
        event: (e) => (e.type === 'DELETED' ? this.podDeleted(e.object) : this.podSeen(e.object)),
        error: (err) => this.log(`kubelet watch: ${(err as Error).message}`),
        recovered: (n) => this.log(`kubelet watch: listing again after ${n} failed attempts`),
      },
      signal,
    );
    this.refreshTimer = setInterval(() => {
      for (const worker of this.workers.values()) {
        void worker.refreshVolumes();
        void worker.enforceStorageLimits();
      }
    }, REFRESH_INTERVAL_MS);
  }

  /** The image every container runs from. */
  get image(): NodeImage {
    return this.options.image;
  }

  /** Pod workers by `namespace/name`, for tests that look at the processes. */
  pods(): PodWorker[] {
    return [...this.workers.values()];
  }

  /** SIGKILLs a pod's containers without restarting them (the pod object stays). */
  crash(namespace: string, name: string): void {
    const worker = this.pods().find((w) => w.name === `${namespace}/${name}`);
    if (!worker) throw new Error(`no pod ${namespace}/${name} on this node`);
    worker.crash();
  }

  /** Stops every pod (SIGTERM, SIGKILL 2 s later): the cluster goes away with it. */
  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.refreshTimer);
    await Promise.all([...this.workers.values()].map((w) => w.vanish()));
    this.workers.clear();
    this.node.close();
  }

  private async registerNode(): Promise<void> {
    const { nodeName, network } = this.options;
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: nodeName, labels: nodeLabels(nodeName) },
    };
    await this.node.post('/api/v1/nodes', node).catch((err) => {
      if (!(err instanceof KubeError && err.status === 409)) throw err;
    });
    const now = new Date().toISOString();
    const capacity = { cpu: '64', memory: '256Gi', pods: '110', 'ephemeral-storage': '100Gi' };
    const ready = { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'test kubelet is ready' };
    await this.node.patch(
      `/api/v1/nodes/${nodeName}/status`,
      {
        status: {
          capacity,
          allocatable: capacity,
          addresses: [
            { type: 'InternalIP', address: network.hostIp },
            { type: 'Hostname', address: nodeName },
          ],
          conditions: [{ ...ready, lastHeartbeatTime: now, lastTransitionTime: now }],
          nodeInfo: nodeInfo(),
        },
      },
      'strategic',
    );
  }

  private syncPods(pods: Pod[]): void {
    const seen = new Set(pods.map((p) => p.metadata.uid));
    for (const [uid, worker] of this.workers) {
      if (!seen.has(uid)) {
        this.workers.delete(uid);
        void worker.vanish();
      }
    }
    for (const pod of pods) this.podSeen(pod);
  }

  private podSeen(pod: Pod): void {
    const existing = this.workers.get(pod.metadata.uid);
    if (existing) {
      existing.update(pod);
      return;
    }
    // A pod that a previous incarnation already finished has nothing left to run.
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    const worker = new PodWorker(pod, this.environment(), this.podsDir);
    this.workers.set(pod.metadata.uid, worker);
    if (pod.metadata.deletionTimestamp) void worker.terminate();
    else void worker.run();
  }

  private podDeleted(pod: Pod): void {
    const worker = this.workers.get(pod.metadata.uid);
    if (!worker) return;
    this.workers.delete(pod.metadata.uid);
    void worker.vanish();
  }

  private environment(): PodEnvironment {
    const { network, image, apiserver } = this.options;
    return {
      network,
      image,
      apiserver,
      sources: (pod) => this.sources(pod),
      patchStatus: (pod, status) => this.patchStatus(pod, status),
      remove: (pod) => this.remove(pod),
      log: this.log,
    };
  }

  private async getData(
    kind: 'secrets' | 'configmaps',
    namespace: string,
    name: string,
  ): Promise<{ data?: Record<string, string>; binaryData?: Record<string, string> } | undefined> {
    try {
      return await this.node.get(`/api/v1/namespaces/${namespace}/${kind}/${name}`);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Where a pod's env and volumes come from: its namespace's objects, and tokens bound to it. */
  private sources(pod: Pod): PodSources {
    const namespace = pod.metadata.namespace ?? 'default';
    const configMapBytes = async (name: string) => {
      const object = await this.getData('configmaps', namespace, name);
      if (!object) return undefined;
      const text = Object.entries(object.data ?? {}).map(([k, v]) => [k, Buffer.from(v)] as const);
      const binary = Object.entries(object.binaryData ?? {}).map(
        ([k, v]) => [k, Buffer.from(v, 'base64')] as const,
      );
      return Object.fromEntries([...text, ...binary]);
    };
    const secretBytes = async (name: string) => binaryAll(await this.getData('secrets', namespace, name));
    return {
      secret: async (name) => toText(await secretBytes(name)),
      configMap: async (name) => toText(await configMapBytes(name)),
      volumes: {
        secret: secretBytes,
        configMap: configMapBytes,
        token: (serviceAccount, audience, expirationSeconds) =>
          this.requestToken(pod, serviceAccount, audience, expirationSeconds),
      },
    };
  }

  private async requestToken(
    pod: Pod,
    serviceAccount: string,
    audience: string | undefined,
    expirationSeconds: number,
  ): Promise<{ token: string; expiresAt: number }> {
    const namespace = pod.metadata.namespace ?? 'default';
    const response = await this.node.post<{ status: { token: string; expirationTimestamp: string } }>(
      `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          ...(audience ? { audiences: [audience] } : {}),
          expirationSeconds,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, uid: pod.metadata.uid },
        },
      },
    );
    return { token: response.status.token, expiresAt: Date.parse(response.status.expirationTimestamp) };
  }

  private async patchStatus(pod: Pod, status: PodStatus): Promise<boolean> {
    const { namespace, name, uid } = pod.metadata;
    try {
      await this.node.patch(
        `/api/v1/namespaces/${namespace}/pods/${name}/status`,
        { metadata: { uid }, status: statusPatch(status) },
        'strategic',
      );
      return true;
    } catch (err) {
      if (isNotFound(err) || (err instanceof KubeError && err.status === 409)) return false;
      throw err;
    }
  }

  private async remove(pod: Pod): Promise<void> {
    const { namespace, name, uid } = pod.metadata;
    try {
      await this.node.delete(`/api/v1/namespaces/${namespace}/pods/${name}`, {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        gracePeriodSeconds: 0,
        preconditions: { uid },
      });
    } catch (err) {
      if (!isNotFound(err) && !(err instanceof KubeError && err.status === 409)) throw err;
    }
  }
}

/**
 * A strategic-merge patch carries only the kubelet's conditions (list merged by `type`, so
 * the operator's `gitmirror.dev/warm` is untouched) and spells out null for every field that
 * must disappear: a merge patch keeps whatever it does not mention.
 */
export function statusPatch(status: PodStatus): Record<string, unknown> {
  const conditions = (status.conditions ?? [])
    .filter((c) => KUBELET_CONDITIONS.includes(c.type))
    .map((c) => ({ reason: null, message: null, ...c }));
  const containers = (list: PodStatus['containerStatuses']) =>
    list?.map((c) => ({
      ...c,
      containerID: c.containerID ?? null,
      state: fullState(c.state),
      lastState: fullState(c.lastState),
    }));
  return {
    ...status,
    conditions,
    containerStatuses: containers(status.containerStatuses),
    ...(status.initContainerStatuses
      ? { initContainerStatuses: containers(status.initContainerStatuses) }
      : {}),
  };
}

function fullState(state: ContainerState): Record<string, unknown> {
  return {
    waiting: state.waiting ?? null,
    running: state.running ?? null,
    terminated: state.terminated ?? null,
  };
}

/** The labels the node registers with; the scheduler matches nodeSelectors against them. */
export function nodeLabels(nodeName: string): Record<string, string> {
  return { 'kubernetes.io/hostname': nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' };
}

function toText(data: Record<string, Buffer> | undefined): Record<string, string> | undefined {
  return data && Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString()]));
}

function binaryAll(
  object: { data?: Record<string, string> } | undefined,
): Record<string, Buffer> | undefined {
  if (!object) return undefined;
  return Object.fromEntries(Object.entries(object.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}

function nodeInfo(): Record<string, string> {
  return {
    architecture: 'amd64',
    operatingSystem: 'linux',
    osImage: 'gitmirror e2e test node',
    kernelVersion: '',
    kubeletVersion: 'v1.35.4',
    kubeProxyVersion: '',
    containerRuntimeVersion: 'e2e://namespaces',
    machineID: '',
    systemUUID: '',
    bootID: '',
  };
}
