import type { Logger } from '../../../core/log.ts';
import { describeError } from '../errors/operator-error.ts';
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
}

/**
 * Runs `workers` loops over one queue. The queue guarantees a key is held by one worker at a
 * time; a thrown error retries the key with backoff, a result may ask for a later look.
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
    const { queue, reconcile, metrics, logger } = this.#options;
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
      metrics.reconcileTotal.inc({ controller, result: 'error' });
      metrics.reconcileErrors.inc({ controller });
      const retries = queue.retries(key);
      logger.warn(
        { controller, key, retries, err: describeError(err) },
        'reconcile failed; retrying with backoff',
      );
      queue.addRateLimited(key);
    } finally {
      metrics.activeWorkers.dec({ controller });
      stopTimer();
    }
  }
}
