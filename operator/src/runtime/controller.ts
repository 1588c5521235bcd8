import type { Logger } from '../../../core/log.ts';
import { describeError, errorKind, OperatorError } from '../errors/operator-error.ts';
import type { OperatorMetrics } from './metrics.ts';
import type { WorkQueue } from './workqueue.ts';

export interface ReconcileResult {
  /** Look at this key again after this long even if nothing changes (polling, timeouts). */
  requeueAfterMs?: number;
}

export type Reconcile = (key: string) => Promise<ReconcileResult>;

export interface ControllerOptions {
  name: string;
  queue: WorkQueue;
  reconcile: Reconcile;
  workers: number;
  logger: Logger;
  metrics: OperatorMetrics;
  /**
   * A stalled key is otherwise looked at again only when its object changes. Set this when a
   * stall can be cured outside the watched objects: a GitMirror's credentials Secret is not
   * watched (the operator may not list Secrets), so its controller looks again this often.
   */
  stalledRecheckMs?: number;
}

/**
 * Runs `workers` loops over one queue. The queue guarantees a key is held by one worker at a
 * time; a result may ask for a later look, and a thrown error is handled by its kind (see
 * `ErrorKind`): stalled waits for a change, waiting looks again after the time it names,
 * anything else retries with backoff.
 */
export class Controller {
  readonly name: string;
  readonly #options: ControllerOptions;
  readonly #loops: Promise<void>[] = [];

  constructor(options: ControllerOptions) {
    this.name = options.name;
    this.#options = options;
  }

  start(): void {
    for (let i = 0; i < this.#options.workers; i++) this.#loops.push(this.#work());
  }

  /** Stops taking keys and waits for reconciles in flight to finish. */
  async stop(): Promise<void> {
    this.#options.queue.shutDown();
    await Promise.all(this.#loops);
  }

  async #work(): Promise<void> {
    const { queue } = this.#options;
    for (let key = await queue.get(); key !== undefined; key = await queue.get()) {
      try {
        await this.#process(key);
      } finally {
        queue.done(key);
      }
    }
  }

  async #process(key: string): Promise<void> {
    const { queue, reconcile, metrics } = this.#options;
    const controller = this.name;
    const stopTimer = metrics.reconcileTime.startTimer({ controller });
    metrics.activeWorkers.inc({ controller });
    try {
      const result = await reconcile(key);
      queue.forget(key);
      if (result.requeueAfterMs !== undefined) {
        queue.addAfter(key, result.requeueAfterMs);
        metrics.reconcileTotal.inc({ controller, result: 'requeue_after' });
      } else metrics.reconcileTotal.inc({ controller, result: 'success' });
    } catch (err) {
      this.#failed(key, err);
    } finally {
      metrics.activeWorkers.dec({ controller });
      stopTimer();
    }
  }

  /** The one place where an error's kind decides what happens to its key. */
  #failed(key: string, err: unknown): void {
    const { queue, metrics, logger, stalledRecheckMs } = this.#options;
    const controller = this.name;
    const kind = errorKind(err);
    if (err instanceof OperatorError && kind === 'waiting') {
      queue.forget(key);
      queue.addAfter(key, err.requeueAfterMs!);
      metrics.reconcileTotal.inc({ controller, result: 'requeue_after' });
      logger.debug({ controller, key, reason: describeError(err) }, 'waiting');
      return;
    }
    if (kind === 'stalled') {
      queue.forget(key);
      if (stalledRecheckMs !== undefined) queue.addAfter(key, stalledRecheckMs);
      metrics.reconcileTotal.inc({ controller, result: 'stalled' });
      logger.info({ controller, key, err: describeError(err) }, 'stalled until the object changes');
      return;
    }
    metrics.reconcileTotal.inc({ controller, result: 'error' });
    metrics.reconcileErrors.inc({ controller });
    logger.warn(
      { controller, key, retries: queue.retries(key), err: describeError(err) },
      'reconcile failed; retrying with backoff',
    );
    queue.addRateLimited(key);
  }
}
