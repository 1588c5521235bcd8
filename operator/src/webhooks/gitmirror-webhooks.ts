import { rfc3339 } from '../../../core/clock.ts';
import { type Delivery, repositoryKey } from '../../../github/src/webhook.ts';
import type { WebhookBackend, WebhookTarget } from '../../../github/src/webhook-receiver.ts';
import type { GitMirror } from '../api/gitmirror.ts';
import type { Pod } from '../api/kubernetes.ts';
import { describeError, isOperatorError } from '../errors/operator-error.ts';
import type { FleetContext } from '../fleet/context.ts';
import { fleetPods, isFleetMember, sidecarTarget } from '../fleet/members.ts';
import { repositoryOf } from '../fleet/spec.ts';
import { WEBHOOK_SECRET_KEY, WebhookSecrets } from './webhook-secrets.ts';

/** A GitMirror a delivery may be for, with its webhook secret. */
export interface GitMirrorTarget extends WebhookTarget {
  gm: GitMirror;
}

/** What one GitMirror's fleet did with a delivery: how many members took the fetch. */
export interface FanOut {
  gitmirror: string;
  members: number;
  fetching: number;
  /** `writer`: only the snapshot writer was asked, and it tells the others once it has fetched. */
  via: 'writer' | 'every member';
  /** Members that could not be asked (unreachable, refused), with the reason. */
  failed: string[];
}

export interface GitMirrorWebhooksDeps
  extends Pick<FleetContext, 'api' | 'stores' | 'sidecars' | 'tokens' | 'clock' | 'logger'> {
  adminPort: number;
}

/** A Secret that lacks the webhook secret is logged once per this long, per GitMirror. */
const MISSING_SECRET_LOG_MS = 5 * 60_000;

/**
 * The operator's side of push webhooks, on every replica (the leader need not take part): a
 * delivery names a repository; the GitMirrors of that repository (from the informer cache, any
 * namespace) whose webhook Secret verifies it get a fetch on every member of their fleet at
 * once, and their status records the delivery. A fetch already queued on a sidecar is joined,
 * and one running is followed by one more, so a burst of pushes costs each replica at most one
 * fetch after the one in progress.
 */
export class GitMirrorWebhooks implements WebhookBackend<GitMirrorTarget> {
  readonly #d: GitMirrorWebhooksDeps;
  readonly #secrets: WebhookSecrets;
  readonly #missingLogged = new Map<string, number>();

  constructor(deps: GitMirrorWebhooksDeps) {
    this.#d = deps;
    this.#secrets = new WebhookSecrets(deps.api, deps.clock);
  }

  async targetsFor(repositories: readonly string[]): Promise<GitMirrorTarget[]> {
    const wanted = new Set(repositories);
    const candidates = this.#d.stores.gitMirrors
      .list()
      .filter(
        (gm) =>
          gm.spec.webhookSecretRef &&
          !gm.metadata.deletionTimestamp &&
          wanted.has(repositoryKey(gm.spec.url) ?? ''),
      );
    const targets: GitMirrorTarget[] = [];
    for (const gm of candidates) {
      const namespace = gm.metadata.namespace ?? '';
      const secretName = gm.spec.webhookSecretRef!.name;
      const secret = await this.#secrets.get(namespace, secretName);
      if (secret) targets.push({ name: `${namespace}/${gm.metadata.name}`, secret, gm });
      else this.#missingSecret(gm, `secret ${namespace}/${secretName}`);
    }
    return targets;
  }

  alreadyHandled(target: GitMirrorTarget, deliveryId: string): boolean {
    return target.gm.status?.webhook?.lastDeliveryID === deliveryId;
  }

  /**
   * Fetch on every member of each target's fleet, in parallel; then the status of each target
   * that reached a member (or has none) records the delivery. Fails only when no member of any
   * target took it, so the forge shows a failed delivery that a person can send again.
   */
  async deliver(targets: GitMirrorTarget[], delivery: Delivery, receivedAt: number): Promise<FanOut[]> {
    const results = await Promise.all(targets.map((t) => this.#fanOut(t)));
    const reached = targets.filter((_, i) => results[i]!.fetching > 0 || results[i]!.members === 0);
    await Promise.all(reached.map((t) => this.#record(t.gm, delivery, receivedAt)));
    for (const result of results) {
      const line = { ...result, event: delivery.event, delivery: delivery.id, provider: delivery.provider };
      if (result.failed.length > 0)
        this.#d.logger.warn(line, 'webhook: some replicas could not be asked to fetch');
      else if (result.via === 'writer')
        this.#d.logger.info(line, 'webhook: the writer fetches, and tells the other replicas if refs moved');
      else this.#d.logger.info(line, 'webhook: every replica fetches');
    }
    if (reached.length === 0) {
      const reasons = results.flatMap((r) => r.failed);
      throw new Error(`no replica could be asked to fetch: ${reasons[0] ?? 'unknown'}`);
    }
    return results;
  }

  /**
   * The snapshot writer alone fetches from upstream and then tells its followers (their specs
   * name it), so a push costs upstream one fetch however large the fleet. Without a writer, or
   * when it cannot be asked, every member is asked, as before there were writers' followers.
   */
  async #fanOut(target: GitMirrorTarget): Promise<FanOut> {
    const { gm } = target;
    const namespace = gm.metadata.namespace ?? '';
    const members = fleetPods(this.#d.stores.pods, namespace, gm.spec.cache).filter(isFleetMember);
    const result: FanOut = {
      gitmirror: target.name,
      members: members.length,
      fetching: 0,
      via: 'every member',
      failed: [],
    };
    if (members.length === 0) return result;
    const id = repositoryOf(gm);
    const token = await this.#d.tokens.ensure(namespace);
    // Alone, the writer is simply every member.
    const writer =
      members.length > 1 ? members.find((pod) => pod.metadata.name === gm.status?.writer) : undefined;
    if (writer && (await this.#fetchOn(writer, { id, token, namespace }, result))) {
      result.via = 'writer';
      return result;
    }
    const others = members.filter((pod) => pod !== writer);
    await Promise.all(others.map((pod) => this.#fetchOn(pod, { id, token, namespace }, result)));
    return result;
  }

  /** Asks one member to fetch; counts the outcome in `result` and says whether it took the fetch. */
  async #fetchOn(
    pod: Pod,
    mirror: { id: string; token: string; namespace: string },
    result: FanOut,
  ): Promise<boolean> {
    try {
      await this.#d.sidecars.fetchMirror(sidecarTarget(pod, this.#d.adminPort, mirror.token), mirror.id);
      result.fetching++;
      return true;
    } catch (err) {
      // A member that does not hold the mirror yet gets it, and fetches, in its warm-up.
      if (isOperatorError(err, 'SIDECAR_NOT_FOUND')) return false;
      if (isOperatorError(err, 'SIDECAR_UNAUTHORIZED')) this.#d.tokens.invalidate(mirror.namespace);
      result.failed.push(`pod ${pod.metadata.name}: ${describeError(err)}`);
      return false;
    }
  }

  async #record(gm: GitMirror, delivery: Delivery, receivedAt: number): Promise<void> {
    const webhook = {
      lastDeliveryTime: rfc3339(receivedAt),
      lastDeliveryID: delivery.id,
      lastEvent: delivery.event,
    };
    try {
      await this.#d.api.patchGitMirrorStatus(gm.metadata.namespace ?? '', gm.metadata.name, { webhook });
    } catch (err) {
      // The fetches are under way; only the record of the delivery is missing.
      this.#d.logger.warn(
        { gitmirror: gm.metadata.name, err: describeError(err) },
        'webhook: status not written',
      );
    }
  }

  #missingSecret(gm: GitMirror, where: string): void {
    const key = `${gm.metadata.namespace}/${gm.metadata.name}`;
    const now = this.#d.clock.now();
    if (now - (this.#missingLogged.get(key) ?? Number.NEGATIVE_INFINITY) < MISSING_SECRET_LOG_MS) return;
    this.#missingLogged.set(key, now);
    this.#d.logger.warn(
      { gitmirror: key },
      `webhook: ${where} has no "${WEBHOOK_SECRET_KEY}" key (or does not exist): deliveries for this mirror are refused`,
    );
  }
}
