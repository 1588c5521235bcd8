import { setTimeout as sleep } from 'node:timers/promises';
import { type Environment, NAMESPACE } from '../scenarios/support/environment.ts';
import type { ReadyEndpoints } from './endpoints.ts';
import { type FleetState, type FleetWatch, fleetWhole } from './fleet-watch.ts';
import type { FaultRecord, KillRecord } from './record.ts';
import type { ChaosPlan, PlannedFault } from './schedule.ts';

/**
 * Plays a chaos plan (schedule.ts) against the fleet and records, for each fault, when it
 * was injected and when the fleet was whole again:
 *
 *   kill-fleet-pod        SIGKILL of a Ready fleet pod's processes, then its force delete (a
 *                         node lost under it): recovered when the Deployment's replacement
 *                         made the fleet whole again
 *   kill-operator-leader  the same for the operator holding the Lease: recovered when
 *                         another Ready operator holds it
 *   rollout               `helm upgrade` changing a pod annotation: recovered when the rollout
 *                         is complete and the old pods are gone
 *   scale                 `helm upgrade` to 5 replicas, 30 s at 5, back to 3: recovered at 3
 *   s3-down               S3 refuses connections for 60 s: recovered when no writer's last
 *                         snapshot attempt since the outage began has failed
 *   upstream-down, -429   the upstream refuses connections, or answers 429 with Retry-After,
 *                         for 60 s: recovered when every Ready pod fetched every mirror
 *                         successfully after the window
 *   apiserver-restart     kube-apiserver stopped (SIGKILL, or SIGTERM with 30 s to drain) and
 *                         started 5 s later: recovered when it answers, an operator leads and
 *                         the fleet is whole
 *
 * Helm upgrades and the API server restart take turns: one control-plane action at a time,
 * as one operator at a keyboard would.
 */

const RECOVERY_TIMEOUT_MS = 10 * 60_000;
const RETRY_AFTER_SECONDS = 10;
const DELETE_ATTEMPTS = 5;

export interface ChaosOptions {
  env: Environment;
  fleet: FleetWatch;
  endpoints: ReadyEndpoints;
  plan: ChaosPlan;
  loadStart: number;
  faults: FaultRecord[];
  kills: KillRecord[];
  log: (line: string) => void;
}

export class Chaos {
  /** Fleet replicas the chart asks for right now. */
  replicas = 3;
  private readonly options: ChaosOptions;
  private readonly running = new Set<Promise<void>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private controlPlane: Promise<unknown> = Promise.resolve();
  private rollouts = 0;

  constructor(options: ChaosOptions) {
    this.options = options;
  }

  start(): void {
    for (const fault of this.options.plan.faults) {
      const delay = this.options.loadStart + fault.atMs - Date.now();
      this.timers.push(setTimeout(() => this.track(this.inject(fault)), Math.max(0, delay)));
    }
  }

  /** Cancels what has not started; waits for injected faults to recover (or time out). */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    while (this.running.size > 0) await Promise.all(this.running);
  }

  /** Whether S3 was down at any moment in [from, to]. */
  s3DownBetween(from: number, to: number): boolean {
    return this.options.faults.some(
      (f) => f.kind === 's3-down' && f.at <= to && (f.endedAt ?? Number.POSITIVE_INFINITY) >= from,
    );
  }

  private track(work: Promise<void>): void {
    const p = work.finally(() => this.running.delete(p));
    this.running.add(p);
  }

  private async inject(fault: PlannedFault): Promise<void> {
    const record: FaultRecord = { kind: fault.kind, plannedMs: fault.atMs, at: Date.now(), detail: '' };
    this.options.faults.push(record);
    const offset = ((record.at - this.options.loadStart) / 1000).toFixed(0);
    this.options.log(`chaos: ${fault.kind} at ${offset} s`);
    try {
      await this.play(fault, record);
      this.options.log(
        `chaos: ${fault.kind} recovered in ${(((record.recoveredAt ?? 0) - (record.endedAt ?? record.at)) / 1000).toFixed(1)} s (${record.detail})`,
      );
    } catch (err) {
      record.error = (err as Error).message;
      this.options.log(`chaos: ${fault.kind} failed: ${record.error}`);
    }
  }

  private play(fault: PlannedFault, record: FaultRecord): Promise<void> {
    switch (fault.kind) {
      case 'kill-fleet-pod':
        return this.killFleetPod(fault, record);
      case 'kill-operator-leader':
        return this.killLeader(record);
      case 'rollout':
        return this.exclusive(() => this.rollout(record));
      case 'scale':
        return this.exclusive(() => this.scale(fault, record));
      case 's3-down':
        return this.s3Down(fault, record);
      case 'upstream-down':
      case 'upstream-429':
        return this.upstreamFault(fault, record);
      case 'apiserver-restart':
        return this.exclusive(() => this.restartApiServer(fault, record));
    }
  }

  /** Runs control-plane actions one after another. */
  private exclusive(action: () => Promise<void>): Promise<void> {
    const next = this.controlPlane.then(action, action);
    this.controlPlane = next.catch(() => undefined);
    return next;
  }

  private async killFleetPod(fault: PlannedFault, record: FaultRecord): Promise<void> {
    const candidates = this.options.fleet.state.fleet.filter((p) => p.ready && !p.terminating);
    const victim = candidates.sort((a, b) => a.name.localeCompare(b.name))[
      Math.floor(fault.pick * candidates.length)
    ];
    if (!victim) throw new Error('no Ready fleet pod to kill');
    const kill: KillRecord = { pod: victim.name, at: Date.now() };
    this.options.kills.push(kill);
    record.at = kill.at;
    record.detail = victim.name;
    await this.crash(victim.name);
    record.endedAt = Date.now();
    const gone = this.waitEndpointGone(victim.name).then((at) => {
      kill.endpointGoneAt = at;
    });
    record.recoveredAt = await this.options.fleet.until(
      'the fleet whole again',
      (s) => !s.fleet.some((p) => p.name === victim.name) && fleetWhole(s, this.replicas),
      RECOVERY_TIMEOUT_MS,
    );
    await gone;
  }

  private async killLeader(record: FaultRecord): Promise<void> {
    const leader = this.options.fleet.state.leaseHolder;
    if (!leader) throw new Error('no operator holds the Lease');
    record.detail = leader;
    record.at = Date.now();
    await this.crash(leader);
    record.endedAt = Date.now();
    record.recoveredAt = await this.options.fleet.until(
      'another operator to lead',
      (s) => s.apiOk && !!s.leaseHolder && s.leaseHolder !== leader && readyOperator(s, s.leaseHolder),
      RECOVERY_TIMEOUT_MS,
    );
    record.detail = `${leader} → ${this.options.fleet.state.leaseHolder}`;
  }

  /** A crash, not a shutdown: SIGKILL, then the pod object goes (a node lost under it). */
  private async crash(pod: string): Promise<void> {
    const { cluster } = this.options.env;
    cluster.kubelet?.crash(NAMESPACE, pod);
    // The crash has happened; the delete is the node controller's part, which keeps trying
    // through an API server too busy to answer (a TLS handshake timeout, in the 60-minute run).
    for (let attempt = 1; ; attempt++) {
      try {
        await cluster.kubectl([
          'delete',
          'pod',
          pod,
          '-n',
          NAMESPACE,
          '--grace-period=0',
          '--force',
          '--wait=false',
        ]);
        return;
      } catch (err) {
        if (/NotFound/.test((err as Error).message)) return;
        if (attempt === DELETE_ATTEMPTS) throw err;
        this.options.log(`chaos: delete of ${pod} failed (attempt ${attempt}), retrying`);
        await sleep(2000 * attempt);
      }
    }
  }

  private async waitEndpointGone(pod: string): Promise<number> {
    while (this.options.endpoints.has(pod)) await sleep(50);
    return Date.now();
  }

  private async rollout(record: FaultRecord): Promise<void> {
    const n = ++this.rollouts;
    record.at = Date.now();
    record.detail = `rollout ${n} of ${this.replicas} pods`;
    const before = new Set(this.options.fleet.state.fleet.map((p) => p.name));
    await this.options.env.upgrade({
      fleet: { podAnnotations: { 'soak.gitmirror.dev/rollout': String(n) } },
    });
    record.endedAt = Date.now();
    record.recoveredAt = await this.options.fleet.until(
      'the rollout to complete',
      (s) => fleetWhole(s, this.replicas) && s.fleet.every((p) => !before.has(p.name)),
      RECOVERY_TIMEOUT_MS,
    );
  }

  private async scale(fault: PlannedFault, record: FaultRecord): Promise<void> {
    record.at = Date.now();
    this.replicas = 5;
    await this.options.env.upgrade({ fleet: { replicas: 5 } });
    const up = await this.options.fleet.until('5 Ready pods', (s) => fleetWhole(s, 5), RECOVERY_TIMEOUT_MS);
    await sleep(fault.durationMs);
    const downAt = Date.now();
    this.replicas = 3;
    await this.options.env.upgrade({ fleet: { replicas: 3 } });
    record.endedAt = Date.now();
    record.recoveredAt = await this.options.fleet.until(
      'back to 3 pods',
      (s) => fleetWhole(s, 3),
      RECOVERY_TIMEOUT_MS,
    );
    record.detail = `3 → 5 whole in ${secs(up - record.at)}, 5 → 3 in ${secs(record.recoveredAt - downAt)}`;
  }

  private async s3Down(fault: PlannedFault, record: FaultRecord): Promise<void> {
    const s3 = this.options.env.faults!.s3;
    record.at = Date.now();
    await s3.down('refuse');
    record.detail = `${secs(fault.durationMs)} connection refused`;
    await sleep(fault.durationMs);
    await s3.up();
    record.endedAt = Date.now();
    record.recoveredAt = await this.options.fleet.until(
      'snapshots to publish again',
      (s) => noFailedSnapshotSince(s, record.at),
      RECOVERY_TIMEOUT_MS,
    );
  }

  private async upstreamFault(fault: PlannedFault, record: FaultRecord): Promise<void> {
    const upstream = this.options.env.faults!.upstream;
    record.at = Date.now();
    if (fault.kind === 'upstream-down') {
      await upstream.down('refuse');
      record.detail = `${secs(fault.durationMs)} connection refused`;
      await sleep(fault.durationMs);
      await upstream.up();
    } else {
      const rule = upstream.inject({
        kind: 'status',
        status: 429,
        message: 'rate limited by the soak',
        headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
      });
      record.detail = `${secs(fault.durationMs)} of 429, Retry-After ${RETRY_AFTER_SECONDS}`;
      await sleep(fault.durationMs);
      rule.remove();
      record.detail += `, ${rule.hits} requests refused`;
    }
    record.endedAt = Date.now();
    const end = record.endedAt;
    record.recoveredAt = await this.options.fleet.until(
      'every Ready pod to fetch every mirror',
      (s) => fetchedSince(s, end),
      RECOVERY_TIMEOUT_MS,
    );
  }

  private async restartApiServer(fault: PlannedFault, record: FaultRecord): Promise<void> {
    const { cluster } = this.options.env;
    if (!cluster.restartApiServer) throw new Error('this cluster cannot restart its API server');
    const signal = fault.pick < 0.5 ? 'SIGKILL' : 'SIGTERM';
    record.at = Date.now();
    const restart = await cluster.restartApiServer({ signal, downForMs: 5000, stopGraceMs: 30_000 });
    record.endedAt = Date.now();
    record.detail = `${signal}: stopped in ${secs(restart.stopMs)}, API unavailable ${secs(restart.unavailableMs)}`;
    record.recoveredAt = await this.options.fleet.until(
      'an operator leading and the fleet whole',
      (s) => !!s.leaseHolder && readyOperator(s, s.leaseHolder) && fleetWhole(s, this.replicas),
      RECOVERY_TIMEOUT_MS,
    );
  }
}

function readyOperator(s: FleetState, name: string): boolean {
  return s.operators.some((p) => p.name === name && p.ready && !p.terminating);
}

function noFailedSnapshotSince(s: FleetState, since: number): boolean {
  for (const list of s.mirrors.values())
    for (const m of list)
      if (
        m.snapshot.writer &&
        m.snapshot.lastResult === 'failed' &&
        Date.parse(m.snapshot.lastAttemptAt ?? '') >= since
      )
        return false;
  return s.mirrors.size > 0;
}

function fetchedSince(s: FleetState, since: number): boolean {
  const ready = s.fleet.filter((p) => p.ready && !p.terminating);
  return (
    ready.length > 0 &&
    ready.every((p) =>
      (s.mirrors.get(p.name) ?? [undefined]).every(
        (m) => m !== undefined && !m.lastFetchError && Date.parse(m.lastFetchTime ?? '') >= since,
      ),
    )
  );
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
