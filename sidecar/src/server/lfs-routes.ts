import { join } from 'node:path';
import type { SidecarConfig } from '../config/sidecar-config.ts';
import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import { LfsAccessVerdicts } from '../lfs/access-verdicts.ts';
import { LfsMetrics } from '../lfs/lfs-metrics.ts';
import { type LfsRepository, LfsService } from '../lfs/lfs-service.ts';
import { LocalLfsObjects } from '../lfs/local-objects.ts';
import { LfsMembership } from '../lfs/membership.ts';
import { LfsObjectCache } from '../lfs/object-cache.ts';
import { LfsPrefetcher, PrefetchQueue } from '../lfs/prefetch.ts';
import { UpstreamLfs } from '../lfs/upstream-lfs.ts';
import { LfsKeyring, LfsUrlTokens } from '../lfs/url-token.ts';
import type { Logger } from '../log/logger.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import { refsDigest } from '../mirrors/git-mirror-ops.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import type { MirrorManager } from '../mirrors/mirror-manager.ts';
import { type RepoId, upstreamUrl } from '../mirrors/repo-id.ts';
import type { SnapshotStore } from '../snapshot/store.ts';

/**
 * What the LFS service needs to know of a repository, from the mirrors: its upstream, and for
 * a mirrored one its access rule, its directory once it serves (pointer lookups) and the
 * cache's own upstream credentials. Hosts are allowed exactly as for git.
 */
export function lfsRepository(
  repo: RepoId,
  deps: { config: SidecarConfig; mirrors: MirrorManager; isAllowedHost(host: string): boolean },
): LfsRepository {
  if (!deps.isAllowedHost(repo.host))
    throw new GitMirrorError('HOST_NOT_ALLOWED', `${repo.host} is not an allowed upstream host`);
  const mirror = deps.mirrors.get(repo.id);
  if (!mirror) return { repo, upstream: upstreamUrl(repo, deps.config.httpHosts) };
  return {
    repo,
    upstream: mirror.upstream,
    mirror: {
      access: mirror.settings.access,
      dir: mirror.ready ? mirror.dir : undefined,
      credentials: mirror.settings.credentials,
    },
  };
}

export interface LfsParts {
  service: LfsService;
  objects: LfsObjectCache;
  prefetches: PrefetchQueue;
}

/**
 * The LFS cache of one sidecar: objects under `$DATA_DIR/lfs`, shared through the snapshot
 * store, URLs sealed with a key derived from the admin token (the secret every replica of a
 * fleet holds), metrics on the sidecar's registry.
 */
export async function startLfs(deps: {
  config: SidecarConfig;
  git: GitRunner;
  store?: SnapshotStore;
  mirrors: MirrorManager;
  isAllowedHost(host: string): boolean;
  metrics: SidecarMetrics;
  logger: Logger;
}): Promise<LfsParts> {
  const local = await LocalLfsObjects.open(join(deps.config.dataDir, 'lfs'));
  const metrics = new LfsMetrics(deps.metrics.registry, {
    bytes: () => local.bytesHeld,
    objects: () => local.objectCount,
  });
  const logger = deps.logger.child({ component: 'lfs' });
  const objects = new LfsObjectCache({
    local,
    store: deps.store,
    metrics,
    logger,
    maxLocalBytes: deps.config.lfsMaxBytes,
  });
  const keyring = deps.config.adminTokenFile
    ? await LfsKeyring.fromSecretFile(deps.config.adminTokenFile)
    : LfsKeyring.random();
  const upstream = new UpstreamLfs({ httpHosts: deps.config.httpHosts });
  const service = new LfsService({
    describe: (repo) => lfsRepository(repo, deps),
    objects,
    tokens: new LfsUrlTokens({ keyring }),
    upstream,
    membership: new LfsMembership({ git: deps.git }),
    verdicts: new LfsAccessVerdicts(),
    metrics,
    logger,
  });
  const prefetcher = new LfsPrefetcher({ git: deps.git, objects, upstream, metrics, logger });
  const prefetches = new PrefetchQueue({ logger });
  const afterFetch = (mirror: Mirror) => {
    const scope = mirror.settings.lfs.prefetch;
    if (scope === 'None' || !mirror.settings.snapshot.writer || !mirror.ready) return;
    prefetches.request(mirror.id, async () => {
      if (mirror.removed) return;
      const covers = `${scope}:${await refsDigest(mirror.gitContext(deps.git))}`;
      const last = mirror.lfsPrefetch;
      // Nothing moved since a complete run: nothing new to download.
      if (last?.refsDigest === covers && last.failed === 0 && !last.error) return;
      const repository = { ...lfsRepository(mirror.repo, deps), dir: mirror.dir };
      const result = await prefetcher.run(repository, scope).catch((err: unknown) => ({
        objects: 0,
        held: 0,
        fetched: 0,
        failed: 0,
        error: describeError(err),
      }));
      mirror.lfsPrefetch = { finishedAt: new Date().toISOString(), ...result, refsDigest: covers };
    });
  };
  deps.mirrors.on('ready', afterFetch);
  deps.mirrors.on('fetched', afterFetch);
  return { service, objects, prefetches };
}
