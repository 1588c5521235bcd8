import type { Clock } from '../../../core/clock.ts';
import type { KubeApi } from '../kube/api.ts';

/** The key of a GitMirror's webhook Secret (`spec.webhookSecretRef`) that holds the secret. */
export const WEBHOOK_SECRET_KEY = 'webhookSecret';

/** How long a webhook secret, or its absence, is remembered: a rotated secret applies after this. */
const TTL_MS = 30_000;

interface Entry {
  at: number;
  value: Promise<string | undefined>;
}

/**
 * Webhook secrets read from Secrets, each kept for 30 s, absent ones too: a burst of deliveries
 * (or of forged requests naming a mirrored repository) costs one API read per Secret, not one
 * each. Reads of one Secret share one request.
 */
export class WebhookSecrets {
  readonly #api: Pick<KubeApi, 'readSecret'>;
  readonly #clock: Clock;
  readonly #entries = new Map<string, Entry>();

  constructor(api: Pick<KubeApi, 'readSecret'>, clock: Clock) {
    this.#api = api;
    this.#clock = clock;
  }

  /** The secret, or undefined when the Secret or its key is missing or empty. */
  get(namespace: string, name: string): Promise<string | undefined> {
    const key = `${namespace}/${name}`;
    const now = this.#clock.now();
    const cached = this.#entries.get(key);
    if (cached && now - cached.at < TTL_MS) return cached.value;
    const value = this.#api
      .readSecret(namespace, name)
      .then((data) => data?.[WEBHOOK_SECRET_KEY] || undefined);
    // A failed read is not remembered: the next delivery asks again.
    value.catch(() => this.#entries.delete(key));
    this.#entries.set(key, { at: now, value });
    for (const [other, entry] of this.#entries) if (now - entry.at >= TTL_MS) this.#entries.delete(other);
    return value;
  }
}
