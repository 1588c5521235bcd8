import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient } from '../cluster/kube-client.ts';

/**
 * The Service's ready endpoints as kube-proxy knows them: a list and watch of its
 * EndpointSlices (kube-controller-manager's), kept up to date in process. While the API
 * server is down the last known endpoints stay in use, as kube-proxy's rules do.
 */

interface EndpointSlice {
  metadata: { name: string; resourceVersion?: string };
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean }; targetRef?: { name: string } }[];
}

export interface Endpoint {
  pod: string;
  ip: string;
}

export class ReadyEndpoints {
  private readonly client: KubeClient;
  private readonly path: string;
  private readonly slices = new Map<string, Endpoint[]>();
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private turn = 0;
  /** Failed lists and watches (the API server restarting, say). */
  errors = 0;

  constructor(client: KubeClient, namespace: string, service: string) {
    this.client = client;
    const selector = encodeURIComponent(`kubernetes.io/service-name=${service}`);
    this.path = `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices?labelSelector=${selector}`;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  list(): Endpoint[] {
    return [...this.slices.values()].flat().sort((a, b) => a.pod.localeCompare(b.pod));
  }

  has(pod: string): boolean {
    return this.list().some((e) => e.pod === pod);
  }

  /** The next ready endpoint, round robin; undefined when there is none. */
  next(): Endpoint | undefined {
    const list = this.list();
    return list.length ? list[this.turn++ % list.length] : undefined;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const list = await this.client.get<{ metadata: { resourceVersion: string }; items: EndpointSlice[] }>(
          this.path,
        );
        this.slices.clear();
        for (const slice of list.items) this.slices.set(slice.metadata.name, readyOf(slice));
        await this.client.watch<EndpointSlice>(
          this.path,
          list.metadata.resourceVersion,
          (event) => {
            if (event.type === 'ADDED' || event.type === 'MODIFIED')
              this.slices.set(event.object.metadata.name, readyOf(event.object));
            else if (event.type === 'DELETED') this.slices.delete(event.object.metadata.name);
          },
          signal,
        );
      } catch {
        if (signal.aborted) return;
        this.errors++;
        await sleep(500).catch(() => undefined);
      }
    }
  }
}

function readyOf(slice: EndpointSlice): Endpoint[] {
  return (slice.endpoints ?? [])
    .filter((e) => e.conditions?.ready === true && e.targetRef && e.addresses[0])
    .map((e) => ({ pod: e.targetRef!.name, ip: e.addresses[0]! }));
}
