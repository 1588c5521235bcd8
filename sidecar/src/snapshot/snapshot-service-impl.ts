import { rm } from 'node:fs/promises';
import type { Logger } from '../../../core/log.ts';
import type { RepoId } from '../../../core/repo-id.ts';
import type { SnapshotStore } from '../store/store.ts';
import { openSnapshotStore } from '../store/store-url.ts';
import { readManifest, type SnapshotManifest } from './manifest.ts';
import { publishSnapshot, shouldSkip } from './publish.ts';
import { downloadAndExtract } from './restore-download.ts';
import type { DownloadedSnapshot, PublishOutcome, SnapshotService } from './snapshot-service.ts';

/** The snapshot layer as the mirror lifecycle sees it, over one store. */
export class StoreSnapshotService implements SnapshotService {
  readonly store: SnapshotStore;
  private readonly logger: Logger;

  constructor(store: SnapshotStore, logger: Logger) {
    this.store = store;
    this.logger = logger;
  }

  latest(repo: RepoId): Promise<SnapshotManifest | undefined> {
    return readManifest(this.store, repo);
  }

  async download(
    repo: RepoId,
    options: Parameters<SnapshotService['download']>[1],
  ): Promise<DownloadedSnapshot> {
    const restored = await downloadAndExtract({
      store: this.store,
      repo,
      key: options.key,
      tempParent: options.tempParent,
      signal: options.signal,
      onProgress: (bytesDone, bytesTotal) =>
        options.onProgress?.({ phase: 'downloading', bytesDone, bytesTotal }),
    });
    // For an older archive, its own record: the caller checks the commit it actually got.
    const { manifest: latest, snapshot } = restored;
    const manifest = snapshot.key === latest.key ? latest : snapshot;
    return { dir: restored.dir, manifest, cleanup: () => rm(restored.dir, { recursive: true, force: true }) };
  }

  async publish(repo: RepoId, options: Parameters<SnapshotService['publish']>[1]): Promise<PublishOutcome> {
    const current = await readManifest(this.store, repo).catch(() => undefined);
    if (current && (await shouldSkip(this.store, current, options.refsDigest)))
      return { result: 'unchanged', manifest: current };
    const manifest = await publishSnapshot({ store: this.store, repo, logger: this.logger, ...options });
    return { result: 'published', manifest };
  }
}

export async function openSnapshotService(
  config: { dataDir: string; snapshotStoreUrl?: string },
  logger: Logger,
): Promise<SnapshotService> {
  const store = await openSnapshotStore(config.snapshotStoreUrl, { dataDir: config.dataDir });
  logger.info({ store: store.description }, 'snapshot store opened');
  return new StoreSnapshotService(store, logger);
}
