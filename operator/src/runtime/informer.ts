import type { Logger } from '../../../core/log.ts';
import type { InformerLike, Store } from '../kube/api.ts';
import { type BackoffPolicy, backoffDelay } from './backoff.ts';

export interface InformerOptions {
  name: string;
  logger: Logger;
  /** Every object is handed to the change handler again this often (jittered by up to 10%). */
  resyncMs: number;
  restartBackoff?: BackoffPolicy;
}

/**
 * client-go's reflector backs off to at most 30 s too: after an API server outage, an informer
 * is watching again within 30 s of its return, however long the outage lasted.
 */
const DEFAULT_RESTART: BackoffPolicy = { baseMs: 1_000, maxMs: 30_000, jitter: 0.2 };

/**
 * Wraps a ListWatch so it never stays stopped: client-node ends the informer on any error but a
 * 410 or a client timeout, so this restarts it with backoff. It also resyncs periodically (the
 * level-triggered safety net for missed events) and reports whether the first list succeeded.
 */
export class ResilientInformer<T> {
  readonly name: string;
  readonly #inner: InformerLike<T>;
  readonly #options: InformerOptions;
  readonly #handlers: ((obj: T) => void)[] = [];
  #synced = false;
  readonly #syncWaiters: (() => void)[] = [];
  #stopped = true;
  #failures = 0;
  #failedSinceStart = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;

  constructor(inner: InformerLike<T>, options: InformerOptions) {
    this.name = options.name;
    this.#inner = inner;
    this.#options = options;
    const emit = (obj: T) => {
      for (const handler of this.#handlers) handler(obj);
    };
    inner.on('add', emit);
    inner.on('update', emit);
    inner.on('delete', emit);
    inner.on('error', (err) => this.#onError(err));
  }

  /** Registers a handler for every add, update, delete and resync. Handlers only enqueue keys. */
  onChange(handler: (obj: T) => void): void {
    this.#handlers.push(handler);
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves once the first list has succeeded (at once if it has). */
  whenSynced(): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve) => this.#syncWaiters.push(resolve));
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#startInner();
    this.#scheduleResync();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#resyncTimer);
    await this.#inner.stop();
  }

  get(namespace: string, name: string): T | undefined {
    return this.#inner.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.#inner.list(namespace);
  }

  async #startInner(): Promise<void> {
    this.#failedSinceStart = false;
    await this.#inner.start();
    // client-node's start() resolves even when the list failed; it reported that through 'error'.
    if (!this.#failedSinceStart) {
      this.#synced = true;
      this.#failures = 0;
      for (const resolve of this.#syncWaiters.splice(0)) resolve();
    }
  }

  #onError(err: unknown): void {
    this.#failedSinceStart = true;
    if (this.#stopped || this.#restartTimer !== undefined) return;
    const delay = backoffDelay(this.#options.restartBackoff ?? DEFAULT_RESTART, this.#failures++);
    const message = err instanceof Error ? err.message : String(err);
    this.#options.logger.warn(
      { informer: this.name, err: message, delayMs: delay },
      'informer failed; restarting',
    );
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#stopped) return;
      this.#startInner().catch((e: unknown) => this.#onError(e));
    }, delay);
  }

  #scheduleResync(): void {
    const { resyncMs } = this.#options;
    const delay = Math.round(resyncMs * (0.9 + 0.1 * Math.random()));
    this.#resyncTimer = setTimeout(() => {
      if (this.#stopped) return;
      for (const obj of this.#inner.list()) for (const handler of this.#handlers) handler(obj);
      this.#scheduleResync();
    }, delay);
    this.#resyncTimer.unref();
  }
}

/** One informer per watched namespace (or a single cluster-wide one) behind one Store. */
export class InformerSet<T> implements Store<T> {
  readonly #byNamespace: Map<string, ResilientInformer<T>>;
  readonly #clusterWide: ResilientInformer<T> | undefined;

  constructor(informers: Map<string, ResilientInformer<T>> | ResilientInformer<T>) {
    if (informers instanceof Map) {
      this.#byNamespace = informers;
      this.#clusterWide = undefined;
    } else {
      this.#byNamespace = new Map();
      this.#clusterWide = informers;
    }
  }

  get all(): ResilientInformer<T>[] {
    return this.#clusterWide ? [this.#clusterWide] : [...this.#byNamespace.values()];
  }

  get(namespace: string, name: string): T | undefined {
    return (this.#clusterWide ?? this.#byNamespace.get(namespace))?.get(namespace, name);
  }

  list(namespace?: string): readonly T[] {
    if (this.#clusterWide) return this.#clusterWide.list(namespace);
    if (namespace !== undefined) return this.#byNamespace.get(namespace)?.list(namespace) ?? [];
    return this.all.flatMap((informer) => informer.list());
  }

  onChange(handler: (obj: T) => void): void {
    for (const informer of this.all) informer.onChange(handler);
  }

  hasSynced(): boolean {
    return this.all.every((informer) => informer.hasSynced());
  }

  async whenSynced(): Promise<void> {
    await Promise.all(this.all.map((informer) => informer.whenSynced()));
  }
}
