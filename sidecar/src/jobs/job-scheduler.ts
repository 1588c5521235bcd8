import { GitMirrorError } from '../errors/gitmirror-error.ts';

export type JobKind = 'clone' | 'restore' | 'fetch' | 'repack' | 'snapshot';

export interface JobRequest<T> {
  /** Jobs of one mirror run one at a time. */
  mirrorId: string;
  kind: JobKind;
  run(signal: AbortSignal): Promise<T>;
}

interface QueuedJob {
  mirrorId: string;
  kind: JobKind;
  run(signal: AbortSignal): Promise<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  promise: Promise<unknown>;
}

export interface JobSchedulerOptions {
  concurrency: number;
  /** Clones and restores move the most data; a burst of them must not starve fetches. */
  cloneConcurrency: number;
  onJobFinished?: (
    job: { mirrorId: string; kind: JobKind },
    outcome: 'success' | 'error',
    seconds: number,
    err?: unknown,
  ) => void;
}

const CLONE_KINDS = new Set<JobKind>(['clone', 'restore']);

/**
 * Runs mirror jobs with per-mirror serialization, a global cap and a separate cap for
 * clones. Submitting a job that is already queued for the same mirror and kind returns the
 * queued one's promise instead of queueing a duplicate; a running job does not absorb new
 * requests, because a fetch asked for after one started may need what that one missed.
 */
export class JobScheduler {
  private readonly options: JobSchedulerOptions;
  private readonly queue: QueuedJob[] = [];
  private readonly activeMirrors = new Map<string, { kind: JobKind; controller: AbortController }>();
  private activeClones = 0;
  private stopped = false;

  constructor(options: JobSchedulerOptions) {
    this.options = options;
  }

  submit<T>(request: JobRequest<T>): Promise<T> {
    if (this.stopped) return Promise.reject(new GitMirrorError('SHUTTING_DOWN', 'job scheduler is stopped'));
    const existing = this.queue.find((j) => j.mirrorId === request.mirrorId && j.kind === request.kind);
    if (existing) return existing.promise as Promise<T>;
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {});
    this.queue.push({ ...request, resolve, reject, promise });
    this.pump();
    return promise as Promise<T>;
  }

  /** The kind of job running for a mirror, if any. */
  running(mirrorId: string): JobKind | undefined {
    return this.activeMirrors.get(mirrorId)?.kind;
  }

  isQueued(mirrorId: string, kind: JobKind): boolean {
    return this.queue.some((j) => j.mirrorId === mirrorId && j.kind === kind);
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get activeCount(): number {
    return this.activeMirrors.size;
  }

  /** Drops queued jobs of a mirror and aborts its running one, optionally only of one kind. */
  cancel(mirrorId: string, kind?: JobKind): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const job = this.queue[i]!;
      if (job.mirrorId !== mirrorId || (kind && job.kind !== kind)) continue;
      this.queue.splice(i, 1);
      job.reject(new GitMirrorError('ABORTED', `${job.kind} of ${mirrorId} cancelled`));
    }
    const active = this.activeMirrors.get(mirrorId);
    if (active && (!kind || active.kind === kind)) active.controller.abort();
  }

  /** Rejects queued jobs and aborts running ones; resolves when running ones have settled or the bound passes. */
  async stop(boundMs: number): Promise<void> {
    this.stopped = true;
    for (const job of this.queue.splice(0))
      job.reject(new GitMirrorError('SHUTTING_DOWN', 'sidecar is shutting down'));
    for (const { controller } of this.activeMirrors.values()) controller.abort();
    // Elapsed real time, as the sleeps in between are real: not the injected clock.
    const deadline = performance.now() + boundMs;
    while (this.activeMirrors.size > 0 && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
  }

  private pump(): void {
    while (this.activeMirrors.size < this.options.concurrency) {
      const index = this.queue.findIndex((job) => this.canStart(job));
      if (index < 0) return;
      const [job] = this.queue.splice(index, 1);
      this.start(job!);
    }
  }

  private canStart(job: QueuedJob): boolean {
    if (this.activeMirrors.has(job.mirrorId)) return false;
    return !CLONE_KINDS.has(job.kind) || this.activeClones < this.options.cloneConcurrency;
  }

  private start(job: QueuedJob): void {
    const controller = new AbortController();
    const isClone = CLONE_KINDS.has(job.kind);
    this.activeMirrors.set(job.mirrorId, { kind: job.kind, controller });
    if (isClone) this.activeClones++;
    const started = performance.now();
    const finish = (outcome: 'success' | 'error', err?: unknown) => {
      this.activeMirrors.delete(job.mirrorId);
      if (isClone) this.activeClones--;
      this.options.onJobFinished?.(job, outcome, (performance.now() - started) / 1000, err);
      this.pump();
    };
    Promise.resolve()
      .then(() => {
        if (controller.signal.aborted)
          throw new GitMirrorError('ABORTED', `${job.kind} of ${job.mirrorId} cancelled`);
        return job.run(controller.signal);
      })
      .then(
        (value) => {
          finish('success');
          job.resolve(value);
        },
        (err: unknown) => {
          finish('error', err);
          job.reject(err);
        },
      );
  }
}
