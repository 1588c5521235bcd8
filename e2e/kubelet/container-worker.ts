import { killGroup } from '../cluster/processes.ts';
import type { ContainerLaunch, RunningContainer } from './container-runtime.ts';
import { startContainer } from './container-runtime.ts';
import type { Container, ContainerState, ContainerStatus, Handler } from './pod-types.ts';
import { type ProbeKind, runHandler, runProbeLoop } from './probes.ts';

/**
 * One container of a pod over its lifetime: start, probes (startup gates readiness and
 * liveness, as in the kubelet), restart with back-off after it exits or fails liveness
 * (restartPolicy Always), and its `containerStatuses` entry. The back-off starts at 1 s and
 * caps at 10 s instead of the kubelet's 10 s to 5 min, so a test sees a restart promptly.
 */

export interface ContainerHooks {
  /** Builds the launch (env, mounts, ...) for each start; throws to report a config error. */
  prepare(container: Container): Promise<ContainerLaunch>;
  podIp: string;
  imageId: string;
  changed(): void;
  /** Grace period for a liveness/startup kill (the pod's terminationGracePeriodSeconds). */
  killGraceMs: number;
}

const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 10_000;
const WAITING: ContainerState = { waiting: { reason: 'ContainerCreating' } };

export class ContainerWorker {
  private running: RunningContainer | undefined;
  private probes: AbortController | undefined;
  private started = false;
  private ready = false;
  private restartCount = 0;
  private state: ContainerState = WAITING;
  private lastState: ContainerState = {};
  private backoffMs = BACKOFF_START_MS;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private startupResolved: (() => void) | undefined;
  /** Why the kubelet killed the process, for its terminated state's message. */
  private lastFailure: string | undefined;
  /** Resolves once the container has started (its startup probe passed, if any). */
  readonly startedOnce: Promise<void>;

  readonly spec: Container;
  private readonly hooks: ContainerHooks;

  constructor(spec: Container, hooks: ContainerHooks) {
    this.spec = spec;
    this.hooks = hooks;
    this.startedOnce = new Promise((resolve) => {
      this.startupResolved = resolve;
    });
  }

  status(): ContainerStatus {
    return {
      name: this.spec.name,
      image: this.spec.image,
      imageID: this.hooks.imageId,
      containerID: this.running ? `e2e://${this.running.process.pid}` : undefined,
      ready: this.ready,
      started: this.started,
      restartCount: this.restartCount,
      state: this.state,
      lastState: this.lastState,
    };
  }

  get exitCode(): number | undefined {
    return this.state.terminated?.exitCode;
  }

  async start(): Promise<void> {
    if (this.stopping) return;
    let launch: ContainerLaunch;
    try {
      launch = await this.hooks.prepare(this.spec);
    } catch (err) {
      this.state = { waiting: { reason: 'CreateContainerConfigError', message: (err as Error).message } };
      this.hooks.changed();
      this.scheduleRestart(false);
      return;
    }
    if (this.stopping) return;
    const running = startContainer(launch);
    this.running = running;
    this.state = { running: { startedAt: running.startedAt } };
    this.hooks.changed();
    void running.process.exited.then((exit) => this.onExit(running, exit.code, exit.signal));
    this.startProbes(running);
  }

  /**
   * Runs the preStop hook (bounded by the deadline, and only when asked), then SIGTERM, and
   * SIGKILL at the deadline — but never sooner than 2 s after SIGTERM, as in the kubelet.
   */
  async stop(deadline: number, preStop = true): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const running = this.running;
    if (!running?.process.running()) return;
    const hook = this.spec.lifecycle?.preStop;
    if (hook && preStop) await this.runHook(hook, running, deadline - Date.now());
    await running.stop(Math.max(deadline - Date.now(), 2000));
    this.probes?.abort();
  }

  /** SIGKILL now, no restart: a crash, or what is left when the pod is removed. */
  crash(): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.probes?.abort();
    if (this.running?.process.running()) killGroup(this.running.process.pid, 'SIGKILL');
  }

  /** Host pid of the running container's PID 1 (for tests that look inside it). */
  initPid(): number | undefined {
    return this.running?.process.running() ? this.running.initPid() : undefined;
  }

  exec(command: string[], timeoutMs: number): Promise<number> {
    return this.running ? this.running.exec(command, timeoutMs) : Promise.resolve(126);
  }

  private async runHook(handler: Handler, running: RunningContainer, budgetMs: number): Promise<void> {
    const target = { podIp: this.hooks.podIp, container: this.spec, exec: running.exec };
    await Promise.race([
      runHandler(handler, target, Math.max(budgetMs, 0)),
      new Promise((resolve) => setTimeout(resolve, Math.max(budgetMs, 0))),
    ]);
  }

  private startProbes(running: RunningContainer): void {
    const abort = new AbortController();
    this.probes = abort;
    const target = { podIp: this.hooks.podIp, container: this.spec, exec: running.exec };
    const loop = (kind: ProbeKind, onChange: (ok: boolean) => void) => {
      const probe = this.spec[`${kind}Probe`];
      if (probe) runProbeLoop(kind, probe, target, onChange, abort.signal);
    };
    const afterStartup = () => {
      this.started = true;
      this.startupResolved?.();
      if (!this.spec.readinessProbe) this.ready = true;
      this.hooks.changed();
      loop('readiness', (ok) => {
        this.ready = ok;
        this.hooks.changed();
      });
      loop('liveness', (ok) => {
        if (!ok) this.restartUnhealthy(running, 'liveness');
      });
    };
    if (this.spec.startupProbe) {
      loop('startup', (ok) => (ok ? afterStartup() : this.restartUnhealthy(running, 'startup')));
    } else {
      afterStartup();
    }
  }

  private restartUnhealthy(running: RunningContainer, probe: string): void {
    if (this.stopping || this.running !== running) return;
    this.lastFailure = `${probe} probe failed`;
    void running.stop(this.hooks.killGraceMs);
  }

  private onExit(running: RunningContainer, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.running !== running) return;
    this.probes?.abort();
    this.started = false;
    this.ready = false;
    const exitCode = code ?? 128 + signalNumber(signal);
    this.state = {
      terminated: {
        exitCode,
        reason: exitCode === 0 ? 'Completed' : 'Error',
        message: this.lastFailure,
        startedAt: running.startedAt,
        finishedAt: new Date().toISOString(),
      },
    };
    this.lastFailure = undefined;
    if (this.stopping) {
      this.hooks.changed();
      return;
    }
    const ranLong = Date.now() - Date.parse(running.startedAt) > 60_000;
    this.scheduleRestart(ranLong);
  }

  private scheduleRestart(resetBackoff: boolean): void {
    if (this.stopping) return;
    if (resetBackoff) this.backoffMs = BACKOFF_START_MS;
    if (this.state.terminated) {
      this.lastState = this.state;
      this.restartCount++;
      this.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${this.backoffMs} ms` } };
    }
    this.hooks.changed();
    this.restartTimer = setTimeout(() => void this.start(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGABRT: 6 };
  return (signal && numbers[signal]) ?? 0;
}
