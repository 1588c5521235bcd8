import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { EventInput } from '../api/kubernetes.ts';
import { describeError } from '../errors/operator-error.ts';
import type { KubeApi } from '../kube/api.ts';

export interface EventRecorderOptions {
  api: Pick<KubeApi, 'createEvent'>;
  /** events.k8s.io reportingController, e.g. gitmirror.dev/operator. */
  controller: string;
  /** This replica's name: the reportingInstance. */
  instance: string;
  clock: Clock;
  logger: Logger;
  /** The same (object, reason, note) is recorded at most once per window. */
  dedupeWindowMs?: number;
}

/**
 * Writes events.k8s.io/v1 Events. Callers record transitions only; the de-duplication here is a
 * second guard against storms when a reconcile loops. Failures are logged, never thrown: an
 * Event is a courtesy, not part of the desired state.
 */
export class EventRecorder {
  readonly #o: EventRecorderOptions;
  readonly #recent = new Map<string, number>();

  constructor(options: EventRecorderOptions) {
    this.#o = options;
  }

  async record(event: EventInput): Promise<void> {
    const { clock, api, logger } = this.#o;
    const now = clock.now();
    const { regarding } = event;
    const dedupeKey = `${regarding.uid ?? `${regarding.namespace}/${regarding.name}`}|${event.reason}|${event.note}`;
    const last = this.#recent.get(dedupeKey);
    const windowMs = this.#o.dedupeWindowMs ?? 10 * 60_000;
    if (last !== undefined && now - last < windowMs) return;
    this.#recent.set(dedupeKey, now);
    if (this.#recent.size > 1000) this.#prune(now, windowMs);
    try {
      await api.createEvent({
        ...event,
        eventTime: new Date(now),
        reportingController: this.#o.controller,
        reportingInstance: this.#o.instance,
      });
    } catch (err) {
      logger.warn(
        { reason: event.reason, object: `${regarding.namespace}/${regarding.name}`, err: describeError(err) },
        'could not record event',
      );
    }
  }

  #prune(now: number, windowMs: number): void {
    for (const [key, at] of this.#recent) if (now - at >= windowMs) this.#recent.delete(key);
  }
}
