import type { Pod } from '../kubelet/pod-types.ts';
import { isNotFound, KubeClient, KubeError, type KubeIdentity, listWatch } from './kube-client.ts';

/**
 * The test cluster's scheduler: binds each pending pod to the one node, as
 * `system:kube-scheduler`. With one node the only question is whether the pod may run there
 * at all (`schedulable`).
 */

export interface TestNode {
  name: string;
  labels: Record<string, string>;
}

export interface SchedulerOptions {
  identity: KubeIdentity;
  node: TestNode;
  log?: (message: string) => void;
}

/** Whether the default scheduler should bind `pod` to `node`: unbound, not deleted, selector met. */
export function schedulable(pod: Pod, node: TestNode): boolean {
  if (pod.spec.nodeName || pod.metadata.deletionTimestamp) return false;
  if (pod.spec.schedulerName && pod.spec.schedulerName !== 'default-scheduler') return false;
  return Object.entries(pod.spec.nodeSelector ?? {}).every(([key, value]) => node.labels[key] === value);
}

export class TestScheduler {
  private readonly client: KubeClient;
  private readonly node: TestNode;
  private readonly log: (message: string) => void;
  private readonly abort = new AbortController();
  /** Pods bound or being bound, by uid: later watch events of a pod never bind it twice. */
  private readonly binding = new Set<string>();

  constructor(options: SchedulerOptions) {
    this.client = new KubeClient(options.identity);
    this.node = options.node;
    this.log = options.log ?? (() => {});
  }

  start(): void {
    void listWatch<Pod>(
      this.client,
      '/api/v1/pods?fieldSelector=spec.nodeName%3D%2Cstatus.phase%3DPending',
      {
        sync: (pods) => pods.forEach((p) => void this.bind(p)),
        event: (e) => (e.type === 'DELETED' ? undefined : void this.bind(e.object)),
        error: (err) => this.log(`scheduler watch: ${(err as Error).message}`),
        recovered: (n) => this.log(`scheduler watch: listing again after ${n} failed attempts`),
      },
      this.abort.signal,
    );
  }

  stop(): void {
    this.abort.abort();
    this.client.close();
  }

  private async bind(pod: Pod): Promise<void> {
    const { namespace, name, uid } = pod.metadata;
    if (this.binding.has(uid) || !schedulable(pod, this.node)) return;
    this.binding.add(uid);
    try {
      await this.client.post(`/api/v1/namespaces/${namespace}/pods/${name}/binding`, {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name, uid },
        target: { apiVersion: 'v1', kind: 'Node', name: this.node.name },
      });
    } catch (err) {
      this.binding.delete(uid);
      if (!isNotFound(err) && !(err instanceof KubeError && err.status === 409)) {
        this.log(`bind ${namespace}/${name}: ${(err as Error).message}`);
      }
    }
  }
}
