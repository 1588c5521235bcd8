import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express, { type Express } from 'express';
import type { ErrorBody } from '../../../core/admin-api.ts';
import { type Clock, systemClock } from '../../../core/clock.ts';
import { createLogger, type Logger } from '../../../core/log.ts';
import { loadGitHubAppFile } from '../../../github/src/app-file.ts';
import { isGitHubError } from '../../../github/src/errors.ts';
import { InstallationTokens } from '../../../github/src/token-cache.ts';
import { adminAuth, adminTokenReader } from '../admin/admin-auth.ts';
import { adminRouter } from '../admin/admin-router.ts';
import type { SidecarConfig } from '../config/sidecar-config.ts';
import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import { AppTokenCredentials } from '../git/app-credentials.ts';
import { type CredentialSource, CredentialsFile } from '../git/credentials.ts';
import { type GitRunner, ProcessGitRunner } from '../git/git-runner.ts';
import { UpstreamAccessCheck } from '../http/access-check.ts';
import type { ClientLimiter } from '../http/client-limiter.ts';
import { GitHttpService, UPLOAD_PACK_TIMEOUT_MS } from '../http/git-http-service.ts';
import { SharedUpstreamResponses } from '../http/shared-upstream-responses.ts';
import { JobScheduler } from '../jobs/job-scheduler.ts';
import { parseLfsPath } from '../lfs/lfs-path.ts';
import type { LfsService } from '../lfs/lfs-service.ts';
import { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import { DataLayout } from '../mirrors/data-layout.ts';
import { FleetLinks, PEER_PATH } from '../mirrors/fleet-links.ts';
import { Freshness } from '../mirrors/freshness.ts';
import { MirrorManager } from '../mirrors/mirror-manager.ts';
import type { PackCache } from '../pack-cache/pack-cache.ts';
import { startPackCache } from '../pack-cache/pack-cache-service.ts';
import { killAllChildren } from '../process/child-process.ts';
import type { SnapshotService } from '../snapshot/snapshot-service.ts';
import { type Budgets, createBudgets } from './budgets.ts';
import { errorHandler } from './error-handler.ts';
import { startLfs } from './lfs-routes.ts';
import { requestLog } from './request-log.ts';

export interface SidecarOverrides {
  git?: GitRunner;
  logger?: Logger;
  /** Time for everything the sidecar records or decides by it (staleness, backoff, TTLs); tests move it. */
  clock?: Clock;
  /** Builds the snapshot layer; undefined disables snapshots (restores fall back to clone). */
  snapshots?: (config: SidecarConfig) => Promise<SnapshotService | undefined>;
}

export interface RunningSidecar {
  config: SidecarConfig;
  mirrors: MirrorManager;
  metrics: SidecarMetrics;
  gitUrl: string;
  adminUrl: string;
  /** True once every mirror listed in GITMIRROR_MIRRORS is ready, until shutdown starts. */
  isReady(): boolean;
  shutdown(): Promise<void>;
}

/** Starts a sidecar: sweeps leftovers, loads mirrors on disk, starts both listeners. */
export async function startSidecar(
  config: SidecarConfig,
  overrides: SidecarOverrides = {},
): Promise<RunningSidecar> {
  const logger = overrides.logger ?? createLogger({ name: 'gitmirror-sidecar' });
  const git = overrides.git ?? new ProcessGitRunner();
  const clock = overrides.clock ?? systemClock;
  // Asked once at start: mirror settings follow it, and a missing git fails here, not later.
  logger.info({ git: (await git.version()).text }, 'git');
  const metrics = new SidecarMetrics();
  const layout = new DataLayout(config.dataDir);
  await layout.prepare();
  const swept = await layout.sweep();
  if (swept.removed || swept.recovered) logger.info(swept, 'swept leftovers of a previous run');
  const snapshots = await overrides.snapshots?.(config);
  const scheduler = new JobScheduler({
    concurrency: config.jobConcurrency,
    cloneConcurrency: config.cloneConcurrency,
    onJobFinished: ({ mirrorId, kind }, outcome, seconds, err) => {
      metrics.gitOperations.inc({ operation: kind, outcome });
      metrics.gitOperationDuration.observe({ operation: kind, outcome }, seconds);
      const line = {
        mirror: mirrorId,
        job: kind,
        outcome,
        seconds: Number(seconds.toFixed(3)),
        err: err && describeError(err),
      };
      logger[outcome === 'success' ? 'info' : 'warn'](line, 'job');
    },
  });
  const credentials = config.credentialsFile
    ? await CredentialsFile.load(config.credentialsFile)
    : CredentialsFile.empty();
  const githubApp = config.githubAppFile
    ? await standaloneGitHubApp(config, { clock, logger, metrics })
    : undefined;
  const budgets = await createBudgets(config, { logger, metrics, clock });
  const adminToken = config.adminTokenFile ? await adminTokenReader(config.adminTokenFile, clock) : undefined;
  const fleet = new FleetLinks({ git, logger, metrics, token: async () => adminToken?.() });
  const mirrors = new MirrorManager({
    config,
    git,
    layout,
    scheduler,
    snapshots,
    credentials,
    githubApp,
    logger,
    metrics,
    clock,
    budget: budgets.disk,
    upstream: budgets.upstream,
    fleet,
  });
  const shared = new SharedUpstreamResponses({ dir: layout.spoolDir, logger, clock });
  budgets.disk.add(shared);
  mirrors.on('ready', (mirror) => shared.dropMirror(mirror.id));
  const packCache = await openPackCache({ config, dir: layout.packCacheDir, git, logger, metrics, clock });
  mirrors.on('removed', (mirror) => packCache?.dropRepository(mirror.id));
  if (packCache) budgets.disk.add(packCache);
  await mirrors.discoverExisting();
  const standalone = config.mirrors.map((url) => mirrors.adopt(url));
  for (const mirror of standalone) void mirrors.warm(mirror).catch(() => {});
  const onDemand = mirrors.onDemandStatus();
  if (onDemand.limit > 0 && onDemand.count > onDemand.limit)
    logger.warn(
      onDemand,
      'more unconfigured mirrors on disk than GITMIRROR_MAX_ON_DEMAND_MIRRORS: all are kept and served, none is created on demand until some are removed',
    );

  let shuttingDown = false;
  const isReady = () => !shuttingDown && standalone.every((m) => m.ready);
  const service = new GitHttpService({
    config,
    git,
    mirrors,
    freshness: new Freshness({
      git,
      logger,
      refCheckIntervalMs: config.refCheckIntervalMs,
      waitMs: config.freshnessWaitMs,
      fetch: (mirror) => mirrors.fetch(mirror, { checkUpstream: true }),
      fleet,
    }),
    shared,
    access: new UpstreamAccessCheck(logger, clock, budgets.upstream),
    snapshots,
    packCache,
    logger,
    metrics,
    upstream: budgets.upstream,
  });
  const lfs = await startLfs({
    config,
    layout,
    git,
    store: snapshots?.store,
    budget: budgets.disk,
    mirrors,
    isAllowedHost: (host) => service.isAllowedHost(host),
    metrics,
    logger,
    clock,
    upstream: budgets.upstream,
  });
  const gitApp = buildGitApp(
    { service, lfs: lfs.service },
    { isReady, logger, metrics, clients: budgets.clients },
  );
  const auth = await adminAuth(config.adminTokenFile, clock);
  const adminApp = buildAdminApp({
    mirrors,
    metrics,
    scheduler,
    packCache,
    auth,
    logger,
    budgets,
    clock,
    service,
  });
  const gitServer = await listen(gitApp, config.listen);
  const adminServer = await listen(adminApp, config.adminListen);
  logger.info(
    {
      git: address(gitServer),
      admin: address(adminServer),
      mirrors: config.mirrors.length,
      store: snapshots?.store.description,
    },
    'sidecar started',
  );

  const shutdown = async () => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info('shutting down: readiness off, draining requests');
    mirrors.stop();
    await closeServer(gitServer, config.shutdownTimeoutMs);
    // LFS objects fetched from upstream lately: give their copies to the store a moment to land.
    await Promise.race([lfs.objects.idle(), sleep(5_000, undefined, { ref: false })]);
    await scheduler.stop(5_000);
    killAllChildren();
    await packCache?.close();
    shared.close();
    budgets.close();
    await closeServer(adminServer, 1_000);
    logger.info('shutdown complete');
  };
  return {
    config,
    mirrors,
    metrics,
    gitUrl: `http://${address(gitServer)}`,
    adminUrl: `http://${address(adminServer)}`,
    isReady,
    shutdown,
  };
}

/**
 * GITMIRROR_GITHUB_APP_FILE: the App is read and its key checked now, so a bad file stops the
 * start; tokens are minted when a command first needs one.
 */
async function standaloneGitHubApp(
  config: SidecarConfig,
  parts: { clock: Clock; logger: Logger; metrics: SidecarMetrics },
): Promise<{ gitHost: string; credentials: CredentialSource }> {
  const { clock, logger, metrics } = parts;
  let loaded: Awaited<ReturnType<typeof loadGitHubAppFile>>;
  try {
    loaded = await loadGitHubAppFile(config.githubAppFile!);
  } catch (err) {
    if (!isGitHubError(err)) throw err;
    throw new GitMirrorError('CONFIG_INVALID', `GITMIRROR_GITHUB_APP_FILE: ${err.message}`);
  }
  const tokens = new InstallationTokens({
    clock,
    onMint: ({ app, outcome, error, seconds }) => {
      metrics.githubTokenMints.inc({ outcome });
      const line = {
        app: app.appId,
        installation: app.installationId,
        outcome,
        seconds,
        err: error?.message,
      };
      if (error) logger.warn(line, 'GitHub App token request failed');
      else logger.info(line, 'GitHub App token minted');
    },
  });
  logger.info(
    { app: loaded.app.appId, installation: loaded.app.installationId, gitHost: loaded.gitHost },
    'GitHub App: mirrors of its host use installation tokens',
  );
  const credentials = new AppTokenCredentials(tokens, loaded.app, { requestBoundMs: config.fetchTimeoutMs });
  return { gitHost: loaded.gitHost, credentials };
}

function buildGitApp(
  { service, lfs }: { service: GitHttpService; lfs: LfsService },
  parts: { isReady: () => boolean; logger: Logger; metrics: SidecarMetrics; clients: ClientLimiter },
): Express {
  const { isReady, logger, metrics } = parts;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    res.status(isReady() ? 200 : 503).json({ ready: isReady() });
  });
  const logged = requestLog(logger, metrics);
  // A client over its share of concurrent requests is told to come back (429), before any work.
  app.use('/git', parts.clients.middleware());
  // Every request under /git gets its context (and its log line), even one for no git endpoint.
  app.all('/git{/*path}', (req, res) =>
    logged(req, res, async (ctx) => {
      if (!['GET', 'HEAD', 'POST'].includes(req.method)) {
        res
          .status(405)
          .set('Allow', 'GET, HEAD, POST')
          .json({ error: { code: 'BAD_REQUEST', message: 'method not allowed' } } satisfies ErrorBody);
        return;
      }
      const target = parseLfsPath(req.path.replace(/^\/git(?=\/)/, ''));
      if (target) return lfs.handle(req, res, { ...target, ctx });
      await service.handle(req, res, ctx);
    }),
  );
  app.use(errorHandler(logger));
  return app;
}

function buildAdminApp(parts: {
  mirrors: MirrorManager;
  metrics: SidecarMetrics;
  scheduler: JobScheduler;
  packCache: PackCache | undefined;
  auth: express.RequestHandler;
  logger: Logger;
  budgets: Budgets;
  clock: Clock;
  service: GitHttpService;
}): Express {
  const { mirrors, metrics, scheduler, packCache, auth, logger, budgets, service } = parts;
  const app = express();
  app.disable('x-powered-by');
  app.get('/metrics', async (_req, res) => {
    const packs = packCache?.stats();
    metrics.packCacheBytes.set(packs?.bytesHeld ?? 0);
    metrics.packCacheBudget.set(packs?.maxBytes ?? 0);
    metrics.packCacheEntries.set(packs?.entries ?? 0);
    metrics.setMirrorStates(mirrors.list().map((m) => m.state));
    metrics.onDemandMirrors.set(mirrors.onDemandCount());
    for (const m of mirrors.list()) {
      const staleness = m.stalenessSeconds();
      if (staleness !== undefined) metrics.mirrorStaleness.set({ mirror: m.id }, staleness);
    }
    metrics.queueDepth.set(scheduler.queueDepth);
    metrics.activeJobs.set(scheduler.activeCount);
    metrics.budget.observe({
      storage: budgets.storageStatus(),
      mirrors: mirrors.list().map((m) => ({
        id: m.id,
        bytes: m.diskBytes,
        missingBytes: m.status().disk?.shortfall?.missingBytes ?? 0,
      })),
      hosts: budgets.upstream.status(),
      now: parts.clock.now(),
    });
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.use('/v1', auth);
  // The fleet's followers fetch this replica's mirrors here, behind the same token.
  const logged = requestLog(logger, metrics);
  app.all(`${PEER_PATH}/*path`, (req, res) => logged(req, res, (ctx) => service.servePeer(req, res, ctx)));
  app.use(
    adminRouter(mirrors, { storage: budgets.storageStatus, upstreams: () => budgets.upstream.status() }),
  );
  app.use(errorHandler(logger));
  return app;
}

/** The pack cache, reporting to the sidecar's metrics; undefined when its budget is 0. */
function openPackCache(parts: {
  config: SidecarConfig;
  dir: string;
  git: GitRunner;
  logger: Logger;
  metrics: SidecarMetrics;
  clock: Clock;
}): Promise<PackCache | undefined> {
  const { config, metrics } = parts;
  return startPackCache({
    dir: parts.dir,
    maxBytes: config.packCacheMaxBytes,
    ttlMs: config.packCacheTtlMs,
    git: parts.git,
    logger: parts.logger,
    clock: parts.clock,
    generationTimeoutMs: UPLOAD_PACK_TIMEOUT_MS,
    observer: {
      lookup: (result, reason) => {
        metrics.packCacheRequests.inc({ result });
        if (reason) metrics.packCacheBypasses.inc({ reason });
      },
      generation: (outcome) => metrics.packCacheGenerations.inc({ outcome }),
      served: (role, bytes) => metrics.packCacheServedBytes.inc({ role }, bytes),
      evicted: (reason) => metrics.packCacheEvictions.inc({ reason }),
    },
  });
}

function listen(app: Express, at: { host: string; port: number }): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(at.port, at.host, (err?: Error) => (err ? reject(err) : resolve(server)));
    // Clones of big repositories stream for a long time; only idle keep-alive sockets time out.
    server.requestTimeout = 0;
    server.keepAliveTimeout = 65_000;
  });
}

function address(server: Server): string {
  const info = server.address() as AddressInfo;
  const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  return `${host === '0.0.0.0' ? '127.0.0.1' : host}:${info.port}`;
}

/** Stops accepting, lets in-flight requests finish up to the bound, then cuts the rest. */
function closeServer(server: Server, boundMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), boundMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
