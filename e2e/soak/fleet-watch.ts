import { setTimeout as sleep } from 'node:timers/promises';
import type { MirrorStatus } from '../../core/admin-api.ts';
import type { KubeClient } from '../cluster/kube-client.ts';
import type { Pod } from '../kubelet/pod-types.ts';
import { NAMESPACE } from '../scenarios/support/environment.ts';
import {
  FLEET_SELECTOR,
  isReady,
  OPERATOR_LEASE,
  OPERATOR_SELECTOR,
} from '../scenarios/support/gitmirror.ts';
import { FLEET_SERVICE } from '../scenarios/support/observers.ts';
import type { ReadyEndpoints } from './endpoints.ts';
import type { LiveViolation } from './record.ts';

/**
 * The fleet as the soak sees it, sampled every second in process (kubectl would cost the
 * shared machine a process per look): pods, the operator's Lease, the Deployment, and every
 * sidecar's mirrors from its admin API. Chaos recovery waits on these samples; the
 * invariants that need the live fleet are checked on each one:
 *
 * - ready-implies-warm: every Ready pod's sidecar says each mirror is ready, every ready
 *   endpoint is a Ready pod, and when a pod is first seen Ready its data volume really holds
 *   each mirror (checked on disk by `checkOnDisk`, so a sidecar that only claims to be warm is
 *   caught too);
 * - single-writer: no two sidecars are snapshot writers of one mirror in the same sample;
 * - restores-not-clones: a pod created after the first snapshots restored every mirror from
 *   one, unless S3 was down while it warmed.
 */

export interface PodView {
  name: string;
  ip?: string;
  ready: boolean;
  terminating: boolean;
  createdAt: number;
}

export interface DeploymentView {
  generation: number;
  observedGeneration: number;
  replicas: number;
  updatedReplicas: number;
  readyReplicas: number;
  availableReplicas: number;
}

export interface FleetState {
  at: number;
  /** Whether this sample's API reads succeeded; if not, the Kubernetes parts are the last known. */
  apiOk: boolean;
  fleet: PodView[];
  operators: PodView[];
  leaseHolder?: string;
  deployment?: DeploymentView;
  /** Mirrors by pod, from the admin API (pods that did not answer are absent). */
  mirrors: Map<string, MirrorStatus[]>;
}

export interface FleetWatchOptions {
  client: KubeClient;
  endpoints: ReadyEndpoints;
  mirrorIds: string[];
  adminToken: string;
  /** Pods the chaos SIGKILLed: their endpoint may linger a moment; that is not the gate's fault. */
  killed: () => Set<string>;
  /** Whether S3 was down at any time in [from, to]. */
  s3DownBetween: (from: number, to: number) => boolean;
  /** Pods created after this had a snapshot to restore from. */
  snapshotsSince: number;
  /** The on-disk check of a pod's mirror, or a problem (absent, refs upstream never had). */
  checkOnDisk: (pod: string, mirrorId: string) => Promise<string | undefined>;
  violation: (v: LiveViolation) => void;
  log: (line: string) => void;
}

const SAMPLE_MS = 1000;

export class FleetWatch {
  state: FleetState = { at: 0, apiOk: false, fleet: [], operators: [], mirrors: new Map() };
  samples = 0;
  errors = 0;
  /** Each time an operator pod was first seen holding the Lease. */
  readonly leaders: { at: number; pod: string }[] = [];
  private readonly options: FleetWatchOptions;
  private readonly seenReady = new Set<string>();
  /** Pod and mirror pairs whose restore source was judged. */
  private readonly judgedRestores = new Set<string>();
  private readonly pending = new Set<Promise<void>>();
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(options: FleetWatchOptions) {
    this.options = options;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await Promise.all(this.pending);
  }

  /** Resolves with the time the condition first held on a sample, or rejects after `timeoutMs`. */
  async until(what: string, condition: (s: FleetState) => boolean, timeoutMs: number): Promise<number> {
    const asked = Date.now();
    const deadline = asked + timeoutMs;
    // Only samples begun after the question: an older one may predate what is waited for.
    let seen = this.state.at;
    while (Date.now() < deadline) {
      if (this.state.at > seen && this.state.at >= asked) {
        seen = this.state.at;
        if (condition(this.state)) return this.state.at;
      }
      await sleep(200);
    }
    throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      await this.sample().catch((err) => this.options.log(`fleet sample: ${(err as Error).message}`));
      await sleep(Math.max(0, SAMPLE_MS - (Date.now() - started)));
    }
  }

  private async sample(): Promise<void> {
    const { client } = this.options;
    const at = Date.now();
    // Endpoints first, then pods, then sidecars: each only moves towards ready while a pod
    // warms, so a violation seen in this order is a real one.
    const endpoints = this.options.endpoints.list();
    let apiOk = true;
    let { fleet, operators, leaseHolder, deployment } = this.state;
    try {
      [fleet, operators] = await Promise.all([this.pods(FLEET_SELECTOR), this.pods(OPERATOR_SELECTOR)]);
      const lease = await client.get<{ spec: { holderIdentity?: string } }>(
        `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/${OPERATOR_LEASE}`,
      );
      leaseHolder = lease.spec.holderIdentity || undefined;
      deployment = deploymentView(
        await client.get(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${FLEET_SERVICE}`),
      );
    } catch {
      apiOk = false;
      this.errors++;
    }
    const mirrors = new Map<string, MirrorStatus[]>();
    await Promise.all(
      fleet
        .filter((p) => p.ip)
        .map(async (p) => {
          const list = await this.mirrorsOf(p.ip!).catch(() => undefined);
          if (list) mirrors.set(p.name, list);
        }),
    );
    if (leaseHolder && leaseHolder !== this.leaders.at(-1)?.pod) this.leaders.push({ at, pod: leaseHolder });
    this.state = { at, apiOk, fleet, operators, leaseHolder, deployment, mirrors };
    this.samples++;
    if (apiOk) this.checkGate(endpoints);
    this.checkWriters();
    this.checkRestores();
  }

  private async pods(selector: string): Promise<PodView[]> {
    const list = await this.options.client.get<{ items: Pod[] }>(
      `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=${encodeURIComponent(selector)}`,
    );
    return list.items.map((pod) => ({
      name: pod.metadata.name,
      ip: pod.status?.podIP,
      ready: isReady(pod),
      terminating: Boolean(pod.metadata.deletionTimestamp),
      createdAt: Date.parse(pod.metadata.creationTimestamp ?? '') || 0,
    }));
  }

  private async mirrorsOf(ip: string): Promise<MirrorStatus[]> {
    const response = await fetch(`http://${ip}:9090/v1/mirrors`, {
      headers: { authorization: `Bearer ${this.options.adminToken}` },
      signal: AbortSignal.timeout(3000),
    });
    if (!response.ok) throw new Error(`GET /v1/mirrors: ${response.status}`);
    return ((await response.json()) as { mirrors: MirrorStatus[] }).mirrors;
  }

  private checkGate(endpoints: { pod: string }[]): void {
    const { at, fleet, mirrors } = this.state;
    const killed = this.options.killed();
    const violation = (detail: string) =>
      this.options.violation({ at, invariant: 'ready-implies-warm', detail });
    for (const e of endpoints) {
      const pod = fleet.find((p) => p.name === e.pod);
      if (pod && !pod.ready && !pod.terminating && !killed.has(pod.name))
        violation(`${e.pod} is a ready endpoint but not a Ready pod`);
    }
    for (const pod of fleet) {
      if (!pod.ready || pod.terminating) continue;
      const list = mirrors.get(pod.name);
      if (list) {
        for (const id of this.options.mirrorIds) {
          const m = list.find((x) => x.id === id);
          if (!m?.ready) violation(`${pod.name} is Ready while mirror ${id} is ${m ? m.state : 'absent'}`);
        }
      }
      if (!this.seenReady.has(pod.name)) {
        this.seenReady.add(pod.name);
        this.track(this.firstReady(pod));
      }
    }
  }

  /** When a pod is first seen Ready: its mirrors are on disk. */
  private async firstReady(pod: PodView): Promise<void> {
    const at = this.state.at;
    for (const id of this.options.mirrorIds) {
      const problem = await this.options.checkOnDisk(pod.name, id);
      if (problem)
        this.options.violation({
          at,
          invariant: 'ready-implies-warm',
          detail: `${pod.name} Ready: ${problem}`,
        });
    }
  }

  /**
   * Each mirror of a pod created after the first snapshots, once its sidecar says where the
   * mirror came from (judged then, not when the pod turns Ready: a sidecar that claims to be
   * warm early must not hide a clone): a snapshot, unless S3 was down meanwhile.
   */
  private checkRestores(): void {
    const { at, fleet, mirrors } = this.state;
    for (const pod of fleet) {
      if (pod.createdAt < this.options.snapshotsSince) continue;
      for (const m of mirrors.get(pod.name) ?? []) {
        const key = `${pod.name} ${m.id}`;
        if (!m.restore.source || this.judgedRestores.has(key)) continue;
        this.judgedRestores.add(key);
        if (m.restore.source === 'snapshot' || this.options.s3DownBetween(pod.createdAt, at)) continue;
        this.options.violation({
          at,
          invariant: 'restores-not-clones',
          detail: `${pod.name}: ${m.id} came from ${m.restore.source}${m.restore.error ? ` (${m.restore.error})` : ''}`,
        });
      }
    }
  }

  private checkWriters(): void {
    const writers = new Map<string, string[]>();
    for (const [pod, list] of this.state.mirrors)
      for (const m of list) if (m.snapshot.writer) writers.set(m.id, [...(writers.get(m.id) ?? []), pod]);
    for (const [id, pods] of writers) {
      if (pods.length > 1)
        this.options.violation({
          at: this.state.at,
          invariant: 'single-writer',
          detail: `${id}: writers ${pods.sort().join(', ')}`,
        });
    }
  }

  private track(work: Promise<void>): void {
    const p = work.catch((err) => this.options.log(`fleet check: ${(err as Error).message}`));
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}

function deploymentView(d: {
  metadata: { generation?: number };
  status?: Partial<Omit<DeploymentView, 'generation'>>;
  spec: { replicas?: number };
}): DeploymentView {
  return {
    generation: d.metadata.generation ?? 0,
    observedGeneration: d.status?.observedGeneration ?? 0,
    replicas: d.spec.replicas ?? 0,
    updatedReplicas: d.status?.updatedReplicas ?? 0,
    readyReplicas: d.status?.readyReplicas ?? 0,
    availableReplicas: d.status?.availableReplicas ?? 0,
  };
}

/** The fleet is whole: `replicas` pods, all Ready and of the current template, none leaving. */
export function fleetWhole(s: FleetState, replicas: number): boolean {
  const d = s.deployment;
  return (
    s.apiOk &&
    s.fleet.length === replicas &&
    s.fleet.every((p) => p.ready && !p.terminating) &&
    d !== undefined &&
    d.observedGeneration >= d.generation &&
    d.replicas === replicas &&
    d.updatedReplicas === replicas &&
    d.availableReplicas === replicas
  );
}
