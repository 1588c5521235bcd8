import type { Server } from 'node:http';
import { collectDefaultMetrics } from 'prom-client';
import { systemClock } from '../../core/clock.ts';
import { createLogger, type Logger } from '../../core/log.ts';
import { startWebhookServer } from '../../github/src/webhook-http.ts';
import type { WebhookAnswer } from '../../github/src/webhook-receiver.ts';
import type { GitMirror } from './api/gitmirror.ts';
import type { Pod } from './api/kubernetes.ts';
import { loadConfig, type OperatorConfig, usage } from './config/config.ts';
import { describeError } from './errors/operator-error.ts';
import type { InformerLike, KubeApi } from './kube/api.ts';
import { ClientNodeKubeApi } from './kube/client-node-api.ts';
import { fleetPodInformer, gitMirrorInformer } from './kube/informers.ts';
import { loadKubeConfig } from './kube/kubeconfig.ts';
import { Operator } from './operator.ts';
import { startHealthServer } from './runtime/health.ts';
import { InformerSet, ResilientInformer } from './runtime/informer.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import { OperatorMetrics } from './runtime/metrics.ts';
import { HttpSidecarClient } from './sidecar/admin-client.ts';

type KubeConfig = ReturnType<typeof loadKubeConfig>;

function informers<T>(
  config: OperatorConfig,
  logger: Logger,
  kind: string,
  make: (namespace: string | undefined) => InformerLike<T>,
): InformerSet<T> {
  const wrap = (namespace: string | undefined) =>
    new ResilientInformer(make(namespace), {
      name: `${kind}/${namespace ?? '*'}`,
      logger,
      resyncMs: config.resyncMs,
    });
  if (config.namespaces.length === 0) return new InformerSet(wrap(undefined));
  return new InformerSet(new Map(config.namespaces.map((ns) => [ns, wrap(ns)])));
}

function buildOperator(
  config: OperatorConfig,
  kc: KubeConfig,
  api: KubeApi,
  logger: Logger,
  metrics: OperatorMetrics,
) {
  return new Operator({
    api,
    gitMirrors: informers<GitMirror>(config, logger, 'gitmirrors', (ns) => gitMirrorInformer(kc, ns)),
    pods: informers<Pod>(config, logger, 'pods', (ns) => fleetPodInformer(kc, ns)),
    sidecars: new HttpSidecarClient({
      timeoutMs: config.sidecarTimeoutMs,
      observe: (method, result) => metrics.sidecarRequests.inc({ method, result }),
    }),
    clock: systemClock,
    logger,
    metrics,
    settings: {
      workers: config.workers,
      warmupPollMs: config.warmupPollMs,
      adminTokenSecret: config.adminTokenSecret,
      identity: config.identity,
      adminPort: config.sidecarAdminPort,
      warmingRequeueMs: 10_000,
      maxSteadyRequeueMs: 5 * 60_000,
      restoreRetryMs: 60_000,
      cleanupGraceMs: 2 * 60_000,
    },
  });
}

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    process.stdout.write(usage());
    return;
  }
  const config = loadConfig(process.argv.slice(2), process.env);
  const logger = createLogger({ name: 'gitmirror-operator' });
  const kc = loadKubeConfig(config.kubeconfig);
  const api = new ClientNodeKubeApi(kc);
  const metrics = new OperatorMetrics();
  collectDefaultMetrics({ register: metrics.registry });
  const operator = buildOperator(config, kc, api, logger, metrics);
  const server = await startHealthServer(
    config.listen,
    { alive: () => true, ready: () => operator.informersSynced() },
    metrics.registry,
  );
  const webhooks =
    config.webhookListen &&
    (await startWebhookServer(config.webhookListen, operator.webhooks, (answer) =>
      observeDelivery(answer, metrics, logger),
    ));
  logger.info(
    {
      listen: config.listen,
      webhookListen: config.webhookListen,
      namespaces: config.namespaces,
      identity: config.identity,
    },
    'operator starting',
  );
  const elector = config.leaderElect
    ? new LeaderElector({
        api,
        namespace: config.leaseNamespace,
        name: config.leaseName,
        identity: config.identity,
        clock: systemClock,
        logger,
        onStartedLeading: () => {
          metrics.leader.set({ name: config.leaseName }, 1);
          void operator.startControllers();
        },
        onStoppedLeading: () => void shutdown(1),
      })
    : undefined;
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    logger.info({ code }, 'operator stopping');
    await operator.stop();
    await elector?.release();
    if (webhooks) await closeServer(webhooks);
    await closeServer(server);
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown(0));
  process.once('SIGINT', () => void shutdown(0));
  await operator.startInformers();
  // A replica campaigns only once its caches are filled. One restarted while the API server was
  // down would otherwise win its own Lease back the moment the server returns and then sit
  // waiting for its informers' next retry, while a standby with full caches could lead at once.
  if (elector) {
    void operator.whenInformersSynced().then(async (synced) => {
      if (synced) await elector.run();
    });
  } else void operator.startControllers();
}

/** Every delivery is counted; unsigned requests are logged at debug only, so strangers cannot flood the log. */
function observeDelivery(answer: WebhookAnswer, metrics: OperatorMetrics, logger: Logger): void {
  const { outcome, provider = 'unknown', targets, status } = answer;
  metrics.webhookDeliveries.inc({ provider, outcome });
  const line = { provider, outcome, status, gitmirrors: targets };
  if (outcome === 'unsigned') logger.debug(line, 'webhook delivery');
  else logger.info(line, 'webhook delivery');
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

main().catch((err: unknown) => {
  process.stderr.write(`gitmirror-operator: ${describeError(err)}\n`);
  process.exit(1);
});
