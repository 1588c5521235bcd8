import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import { type RepoId, upstreamUrl } from '../../../core/repo-id.ts';
import type { SidecarConfig } from '../config/sidecar-config.ts';
import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import { LfsMetrics } from '../lfs/lfs-metrics.ts';
import { type LfsRepository, LfsService, lfsVerdicts } from '../lfs/lfs-service.ts';
import { LocalLfsObjects } from '../lfs/local-objects.ts';
import { LfsMembership } from '../lfs/membership.ts';
import { LfsObjectCache, type LfsSpace } from '../lfs/object-cache.ts';
import { LfsPrefetcher, PrefetchQueue } from '../lfs/prefetch.ts';
import { UpstreamLfs } from '../lfs/upstream-lfs.ts';
import { LfsKeyring, LfsUrlTokens } from '../lfs/url-token.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { DataLayout } from '../mirrors/data-layout.ts';
import { refsDigest } from '../mirrors/git-mirror-ops.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import type { MirrorManager } from '../mirrors/mirror-manager.ts';
import type { SnapshotStore } from '../store/store.ts';
import type { UpstreamHosts } from '../upstream/host-gate.ts';

/**
 * What the LFS service needs to know of a repository, from the mirrors: its upstream, and for
 * a mirrored one its access rule, its directory once it serves (pointer lookups) and the
 * mirror's own upstream credentials, read at each request so a rotated credential applies at
 * once. Hosts are allowed exactly as for git.
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
  /** The objects on this replica's disk: its use is a seam for a data budget (`bytesHeld`, `evict`). */
  objects: LfsObjectCache;
  prefetches: PrefetchQueue;
}

/**
 * The sidecar's data budget as the LFS cache meets it: it holds the cache (its bytes count,
 * its least recently used objects may be evicted) and downloads reserve space from it.
 */
export interface LfsBudget extends LfsSpace {
  add(holder: LfsObjectCache): void;
}

export interface LfsDeps {
  config: SidecarConfig;
  layout: DataLayout;
  git: GitRunner;
  store?: SnapshotStore;
  budget?: LfsBudget;
  mirrors: MirrorManager;
  isAllowedHost(host: string): boolean;
  metrics: SidecarMetrics;
  logger: Logger;
  clock: Clock;
  /** The upstream hosts' gates: LFS requests wait out a host's backoff as git's do. */
  upstream?: UpstreamHosts;
}

/**
 * The LFS cache of one sidecar: objects under `$DATA_DIR/lfs`, shared through the snapshot
 * store, URLs sealed with a key derived from the admin token (the secret every replica of a
 * fleet holds), metrics on the sidecar's registry, prefetch after each fetch on the writer.
 */
export async function startLfs(deps: LfsDeps): Promise<LfsParts> {
  const { config, clock } = deps;
  const local = await LocalLfsObjects.open(deps.layout.lfsDir, { clock });
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
    maxLocalBytes: config.lfsMaxBytes,
    space: deps.budget,
  });
  deps.budget?.add(objects);
  const keyring = config.adminTokenFile
    ? await LfsKeyring.fromSecretFile(config.adminTokenFile, { clock })
    : LfsKeyring.random();
  const upstream = new UpstreamLfs({ httpHosts: config.httpHosts, hosts: deps.upstream });
  const service = new LfsService({
    describe: (repo) => lfsRepository(repo, deps),
    objects,
    tokens: new LfsUrlTokens({ keyring, clock }),
    upstream,
    membership: new LfsMembership({ git: deps.git }),
    verdicts: lfsVerdicts(clock),
    metrics,
    logger,
  });
  const prefetcher = new LfsPrefetcher({ git: deps.git, objects, upstream, metrics, logger });
  const prefetches = new PrefetchQueue({ logger });
  const afterFetch = (mirror: Mirror) => {
    const scope = mirror.settings.lfs.prefetch;
    if (scope === 'None' || !mirror.settings.snapshot.writer || !mirror.ready) return;
    prefetches.request(mirror.id, () => prefetch(mirror, scope));
  };
  const prefetch = async (mirror: Mirror, scope: 'Head' | 'AllRefs') => {
    if (!mirror.ready) return; // removed meanwhile
    const covers = `${scope}:${await refsDigest(mirror.gitContext(deps.git))}`;
    // Nothing moved since a complete run: nothing new to download.
    if (mirror.lfsPrefetchCovers(covers)) return;
    const repository = { ...lfsRepository(mirror.repo, deps), dir: mirror.dir };
    const result = await prefetcher.run(repository, scope).catch((err: unknown) => ({
      objects: 0,
      held: 0,
      fetched: 0,
      failed: 0,
      error: describeError(err),
    }));
    mirror.lfsPrefetched(covers, result);
  };
  deps.mirrors.on('ready', afterFetch);
  deps.mirrors.on('fetched', afterFetch);
  return { service, objects, prefetches };
}
