import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { InstallationTokens, type MintEvent } from '../../github/src/token-cache.ts';
import { WebhookReceiver } from '../../github/src/webhook-receiver.ts';
import { type GitMirror, keyOf } from './api/gitmirror.ts';
import type { Pod } from './api/kubernetes.ts';
import { fleetOf, fleetPods } from './fleet/members.ts';
import { AppliedSpecs } from './fleet/mirror-sync.ts';
import { GitMirrorReconciler, type ReconcileSettings } from './gitmirror/reconcile.ts';
import type { KubeApi } from './kube/api.ts';
import { Controller } from './runtime/controller.ts';
import { EventRecorder } from './runtime/events.ts';
import type { InformerSet } from './runtime/informer.ts';
import type { OperatorMetrics } from './runtime/metrics.ts';
import { defaultRateLimiter, WorkQueue } from './runtime/workqueue.ts';
import type { SidecarClient } from './sidecar/admin-client.ts';
import { AdminTokens } from './sidecar/admin-token.ts';
import { PodReconciler } from './warmup/pod-reconcile.ts';
import { type GitMirrorTarget, GitMirrorWebhooks } from './webhooks/gitmirror-webhooks.ts';

export interface OperatorSettings extends ReconcileSettings {
  workers: number;
  warmupPollMs: number;
  adminTokenSecret: string;
  /** This replica's name, the reportingInstance of its Events. */
  identity: string;
}

export interface OperatorDeps {
  api: KubeApi;
  gitMirrors: InformerSet<GitMirror>;
  pods: InformerSet<Pod>;
  sidecars: SidecarClient;
  clock: Clock;
  logger: Logger;
  metrics: OperatorMetrics;
  settings: OperatorSettings;
}

/**
 * Wires the two controllers to the informers. Informer events only enqueue keys: a GitMirror
 * change enqueues it and the pods of its fleet (a warming pod waits on the fleet's mirrors); a
 * pod change enqueues the pod and the GitMirrors of its fleet (replica counts, writer).
 */
export class Operator {
  readonly gitMirrorQueue: WorkQueue;
  readonly podQueue: WorkQueue;
  /** What was PUT to which pod, shared by both controllers; forgotten when a pod goes. */
  readonly applied = new AppliedSpecs();
  /**
   * Push webhook deliveries, on every replica: it needs only the informer caches, and whichever
   * replica the Service sends a delivery to makes the fleet fetch.
   */
  readonly webhooks: WebhookReceiver<GitMirrorTarget>;
  readonly #deps: OperatorDeps;
  readonly #controllers: Controller[];
  #started: Promise<void> | undefined;
  readonly #stopping = Promise.withResolvers<'stopped'>();
  #stopped = false;

  constructor(deps: OperatorDeps) {
    this.#deps = deps;
    const { metrics, logger, settings } = deps;
    this.gitMirrorQueue = new WorkQueue(defaultRateLimiter(), metrics.queueObserver('gitmirror'));
    this.podQueue = new WorkQueue(defaultRateLimiter(), metrics.queueObserver('pod'));
    const shared = {
      api: deps.api,
      stores: { gitMirrors: deps.gitMirrors, pods: deps.pods },
      sidecars: deps.sidecars,
      tokens: new AdminTokens(deps.api, settings.adminTokenSecret),
      applied: this.applied,
      // Only the leader reconciles, so only the leader mints: one token per installation for
      // the whole fleet, however many replicas and GitMirrors share it.
      githubTokens: new InstallationTokens({
        clock: deps.clock,
        onMint: (event) => recordMint(event, metrics, logger),
      }),
      events: new EventRecorder({
        api: deps.api,
        controller: 'gitmirror.dev/operator',
        instance: settings.identity,
        clock: deps.clock,
        logger,
      }),
      clock: deps.clock,
    };
    this.webhooks = new WebhookReceiver({
      backend: new GitMirrorWebhooks({
        ...shared,
        logger: logger.child({ component: 'webhooks' }),
        adminPort: settings.adminPort,
      }),
      clock: deps.clock,
    });
    const gitMirrors = new GitMirrorReconciler({
      ...shared,
      logger: logger.child({ controller: 'gitmirror' }),
      settings,
    });
    const pods = new PodReconciler({
      ...shared,
      metrics,
      logger: logger.child({ controller: 'pod-warmup' }),
      settings: {
        adminPort: settings.adminPort,
        pollMs: settings.warmupPollMs,
        restoreRetryMs: settings.restoreRetryMs,
      },
    });
    // A stall may be cured in a Secret (a GitMirror's credentials, the admin token), and the
    // operator does not watch Secrets: stalled keys are looked at again this often.
    const common = {
      workers: settings.workers,
      logger,
      metrics,
      stalledRecheckMs: settings.maxSteadyRequeueMs,
    };
    this.#controllers = [
      new Controller({
        ...common,
        name: 'gitmirror',
        queue: this.gitMirrorQueue,
        reconcile: gitMirrors.reconcile,
      }),
      new Controller({ ...common, name: 'pod-warmup', queue: this.podQueue, reconcile: pods.reconcile }),
    ];
    deps.gitMirrors.onChange((gm) => this.#onGitMirror(gm));
    deps.pods.onChange((pod) => this.#onPod(pod));
  }

  /** Informers run on every replica, so a standby is ready to lead at once. */
  async startInformers(): Promise<void> {
    await Promise.all([...this.#deps.gitMirrors.all, ...this.#deps.pods.all].map((i) => i.start()));
  }

  /**
   * Only the leader reconciles, and only once every informer has listed (client-go's
   * WaitForCacheSync). A replica can win the Lease before that: one restarted while the API
   * server was down re-acquires its own Lease as soon as the server is back, while its
   * informers still wait out their restart backoff. Reconciling then would read half-empty
   * caches: a pod's with no GitMirror in it opens a cold pod's gate (`NoMirrors`), a
   * GitMirror's with no pods counts no replicas. Keys queued meanwhile wait in the queues.
   */
  startControllers(): Promise<void> {
    this.#started ??= this.#startWhenSynced();
    return this.#started;
  }

  async #startWhenSynced(): Promise<void> {
    if (!this.informersSynced())
      this.#deps.logger.info('waiting for the informers to list before reconciling');
    if (!(await this.whenInformersSynced())) return;
    for (const controller of this.#controllers) controller.start();
  }

  /** Resolves true once every informer has listed, false if the operator stops first. */
  async whenInformersSynced(): Promise<boolean> {
    if (!this.informersSynced()) {
      const synced = Promise.all([this.#deps.gitMirrors.whenSynced(), this.#deps.pods.whenSynced()]);
      await Promise.race([synced, this.#stopping.promise]);
    }
    return !this.#stopped;
  }

  informersSynced(): boolean {
    return this.#deps.gitMirrors.hasSynced() && this.#deps.pods.hasSynced();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping.resolve('stopped');
    await Promise.all(this.#controllers.map((c) => c.stop()));
    await Promise.all([...this.#deps.gitMirrors.all, ...this.#deps.pods.all].map((i) => i.stop()));
  }

  #onGitMirror(gm: GitMirror): void {
    this.gitMirrorQueue.add(keyOf(gm.metadata));
    const namespace = gm.metadata.namespace ?? '';
    for (const pod of fleetPods(this.#deps.pods, namespace, gm.spec.cache))
      this.podQueue.add(keyOf(pod.metadata));
  }

  #onPod(pod: Pod): void {
    this.podQueue.add(keyOf(pod.metadata));
    const cache = fleetOf(pod);
    const namespace = pod.metadata.namespace ?? '';
    // Informers drop a deleted object from the cache before telling us about it.
    const { uid = '', name } = pod.metadata;
    if (this.#deps.pods.get(namespace, name)?.metadata.uid !== uid) this.applied.forgetPod(uid);
    for (const gm of this.#deps.gitMirrors.list(namespace)) {
      if (gm.spec.cache === cache) this.gitMirrorQueue.add(keyOf(gm.metadata));
    }
  }
}

function recordMint(event: MintEvent, metrics: OperatorMetrics, logger: Logger): void {
  const { app, outcome, error, expiresAt, seconds } = event;
  metrics.githubTokenMints.inc({ outcome });
  const ids = { app_id: app.appId, installation_id: app.installationId };
  if (expiresAt !== undefined) metrics.githubTokenExpiry.set(ids, expiresAt / 1000);
  const line = { app: app.appId, installation: app.installationId, outcome, seconds };
  if (error) logger.warn({ ...line, err: error.message }, 'GitHub App token request failed');
  else logger.info({ ...line, expiresAt: new Date(expiresAt ?? 0).toISOString() }, 'GitHub App token minted');
}
