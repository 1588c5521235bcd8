import type { Clock } from '../../core/clock.ts';
import {
  type Delivery,
  type HeaderBag,
  isSigned,
  parseDelivery,
  providerOf,
  verifyDelivery,
  WebhookError,
  type WebhookProvider,
} from './webhook.ts';

/** A mirror a delivery may be for, with the secret it must be signed with. */
export interface WebhookTarget {
  /** For logs and answers: `namespace/name` of a GitMirror, a mirror id standalone. */
  name: string;
  secret: string;
}

/**
 * Where the receiver looks up mirrors and what it does with a verified delivery. The operator
 * implements it with its GitMirror cache and the fleet's admin API, a standalone sidecar with
 * its own mirrors.
 */
export interface WebhookBackend<T extends WebhookTarget> {
  /** Mirrors of these repositories (normalised keys, see `repositoryKey`) that have a webhook secret. */
  targetsFor(repositories: readonly string[]): Promise<T[]>;
  /** Act on a verified delivery for these targets (every replica fetches); resolves with a summary. */
  deliver(targets: T[], delivery: Delivery, receivedAt: number): Promise<unknown>;
  /**
   * Whether this target already took the delivery with this id, as recorded where every
   * receiver sees it (a GitMirror's status): a redelivery that reaches another replica than
   * the first attempt is then a duplicate too. Optional; the receiver's own log covers the rest.
   */
  alreadyHandled?(target: T, deliveryId: string): boolean;
}

export type WebhookOutcome =
  | 'delivered'
  | 'duplicate'
  | 'ping'
  | 'ignored'
  | 'unsigned'
  | 'bad_signature'
  | 'bad_request'
  | 'too_large'
  | 'failed';

export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
  outcome: WebhookOutcome;
  provider?: WebhookProvider;
  /** Targets the delivery was verified for (names only). */
  targets: string[];
}

export interface WebhookRequest {
  headers: HeaderBag;
  body: Buffer;
}

/** GitHub caps payloads at 25 MB; anything larger is not a delivery we handle. */
export const MAX_WEBHOOK_BODY_BYTES = 25 * 1024 * 1024;

const UNAUTHORIZED = 'the delivery is not signed with the webhook secret of a mirror of this repository';

/**
 * The delivery flow, independent of the HTTP server it runs in: an unsigned request is refused
 * before its body is parsed; the payload's repository selects the candidate mirrors; only
 * those whose secret verifies the signature get the delivery, and if none does the answer is
 * 401 and nothing happens (the same answer whether no mirror matched or the signature was
 * wrong, so the endpoint tells strangers nothing about what is mirrored). A delivery id seen
 * before (a redelivery) is answered 200 and not acted on again. Ids are remembered only after
 * verification, so forged requests cannot use up or poison the record.
 */
export class WebhookReceiver<T extends WebhookTarget> {
  private readonly backend: WebhookBackend<T>;
  private readonly clock: Clock;
  private readonly seen: DeliveryLog;

  constructor(options: { backend: WebhookBackend<T>; clock: Clock; log?: DeliveryLog }) {
    this.backend = options.backend;
    this.clock = options.clock;
    this.seen = options.log ?? new DeliveryLog({ clock: options.clock });
  }

  async receive(request: WebhookRequest): Promise<WebhookAnswer> {
    const provider = providerOf(request.headers);
    if (!provider || !isSigned(provider, request.headers)) return unsignedAnswer();
    if (request.body.length > MAX_WEBHOOK_BODY_BYTES)
      return answer(413, 'too_large', 'payload too large', provider);
    let delivery: Delivery;
    try {
      delivery = parseDelivery(provider, request.headers, request.body);
    } catch (err) {
      if (err instanceof WebhookError) return answer(err.status, 'bad_request', err.message, provider);
      throw err;
    }
    const candidates = await this.backend.targetsFor(delivery.repositories);
    const targets = candidates.filter((t) =>
      verifyDelivery(provider, request.headers, request.body, t.secret),
    );
    if (targets.length === 0) return answer(401, 'bad_signature', UNAUTHORIZED, provider);
    const names = targets.map((t) => t.name);
    if (delivery.action === 'ping') return answer(200, 'ping', 'pong', provider, names);
    if (delivery.action === 'ignore') {
      return answer(202, 'ignored', `event ${delivery.event} does not move refs`, provider, names);
    }
    const { id } = delivery;
    const key = id ? `${provider}:${id}` : undefined;
    const fresh = id ? targets.filter((t) => !this.backend.alreadyHandled?.(t, id)) : targets;
    if (key && (fresh.length === 0 || !this.seen.claim(key))) {
      return answer(200, 'duplicate', `delivery ${id} was handled already`, provider, names);
    }
    try {
      const result = await this.backend.deliver(fresh, delivery, this.clock.now());
      return {
        ...answer(202, 'delivered', 'fetching', provider, names),
        body: { message: 'fetching', targets: result },
      };
    } catch (err) {
      // Not handled: a redelivery of the same id must get another chance.
      if (key) this.seen.release(key);
      return answer(
        500,
        'failed',
        `the delivery could not be handed on: ${(err as Error).message}`,
        provider,
        names,
      );
    }
  }
}

/** The answer to a request that carries no signature (or token) at all. */
export function unsignedAnswer(): WebhookAnswer {
  return answer(401, 'unsigned', 'the delivery is not signed (set a secret on the webhook)');
}

function answer(
  status: number,
  outcome: WebhookOutcome,
  message: string,
  provider?: WebhookProvider,
  targets: string[] = [],
): WebhookAnswer {
  return { status, outcome, provider, targets, body: { message } };
}

/**
 * Delivery ids handled recently: bounded in count and age (GitHub lets a person redeliver a
 * delivery for three days), oldest forgotten first.
 */
export class DeliveryLog {
  private readonly ids = new Map<string, number>();
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private readonly ttlMs: number;

  constructor(options: { clock: Clock; maxEntries?: number; ttlMs?: number }) {
    this.clock = options.clock;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.ttlMs = options.ttlMs ?? 3 * 24 * 60 * 60_000;
  }

  /** Records the id; false if it was already recorded (and not expired). */
  claim(id: string): boolean {
    const now = this.clock.now();
    const at = this.ids.get(id);
    if (at !== undefined && now - at < this.ttlMs) return false;
    this.ids.delete(id);
    this.ids.set(id, now);
    for (const [oldest, when] of this.ids) {
      if (this.ids.size <= this.maxEntries && now - when < this.ttlMs) break;
      this.ids.delete(oldest);
    }
    return true;
  }

  release(id: string): void {
    this.ids.delete(id);
  }
}
