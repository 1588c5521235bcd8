import type { Logger } from '../../../core/log.ts';
import type { RepoId } from '../../../core/repo-id.ts';
import { MIN_SNAPSHOT_RETAIN } from '../../../core/snapshot.ts';
import {
  type ArchiveDigest,
  type ArchiveOptions,
  createArchiveStream,
  writeArchiveFile,
} from '../archive/archive-create.ts';
import { describeError, GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { ObjectInfo, SnapshotStore } from '../store/store.ts';
import { archiveKey, isCommitId, parseArchiveKey } from './layout.ts';
import { readManifest, recordOf, SNAPSHOT_FORMAT, type SnapshotManifest, writeManifest } from './manifest.ts';
import { DEFAULT_ORPHAN_GRACE_MS, pruneArchives } from './prune.ts';

export interface PublishOptions {
  store: SnapshotStore;
  repo: RepoId;
  /** The bare mirror; the caller holds its fetch lock so refs and packs stay put meanwhile. */
  mirrorDir: string;
  /** HEAD of the mirror, full hex. */
  commit: string;
  refsDigest?: string;
  /** Archives to keep, latest included; at least 2. */
  retain: number;
  signal?: AbortSignal;
  now?: () => Date;
  archive?: Omit<ArchiveOptions, 'signal'>;
  /** Unreferenced archives younger than this may be another writer's in-progress publish. */
  orphanGraceMs?: number;
  logger?: Logger;
}

/**
 * Archive into the store (size and every piece's sha256 measured by the archiver, no temp copy) →
 * manifest written last → prune. A failure before the manifest write leaves the previous
 * manifest in force and at most an orphan archive that a later prune removes.
 */
export async function publishSnapshot(options: PublishOptions): Promise<SnapshotManifest> {
  const { repo, commit, retain } = options;
  if (!isCommitId(commit))
    throw new GitMirrorError('BAD_REQUEST', 'commit must be a full lower-case hex object id');
  if (!Number.isInteger(retain) || retain < MIN_SNAPSHOT_RETAIN)
    throw new GitMirrorError('CONFIG_INVALID', `snapshot retain must be >= ${MIN_SNAPSHOT_RETAIN}`);
  const replaced = await readReplaceable(options);
  const now = options.now?.() ?? new Date();
  const createdAt = nextStamp(now, replaced, repo);
  const key = archiveKey(repo, createdAt, commit);
  const digest = await uploadArchive(options, key);
  const manifest: SnapshotManifest = {
    key,
    commit,
    createdAt: createdAt.toISOString(),
    sizeBytes: digest.sizeBytes,
    sha256: digest.sha256,
    unpackedBytes: digest.unpackedBytes,
    entries: digest.entries,
    format: SNAPSHOT_FORMAT,
    indexBytes: digest.indexBytes,
    ...(options.refsDigest ? { refsDigest: options.refsDigest } : {}),
    previous: replaced ? [recordOf(replaced), ...(replaced.previous ?? [])].slice(0, retain - 1) : [],
  };
  await commitManifest(options, manifest);
  await prune(options, manifest, replaced);
  return manifest;
}

/**
 * True when publishing would only repeat the current snapshot: the refs are unchanged and
 * the archive the manifest names is still in the store (checked on the store itself, since
 * a lost object must be re-published even if nothing changed).
 */
export async function shouldSkip(
  store: SnapshotStore,
  manifest: SnapshotManifest | undefined,
  refsDigest: string | undefined,
): Promise<boolean> {
  if (!manifest || !refsDigest || manifest.refsDigest !== refsDigest) return false;
  const head = await store.head(manifest.key);
  return head !== undefined && head.sizeBytes === manifest.sizeBytes;
}

/** The manifest being replaced; a corrupt one is replaced too rather than wedging publishing. */
async function readReplaceable(options: PublishOptions): Promise<SnapshotManifest | undefined> {
  try {
    return await readManifest(options.store, options.repo);
  } catch (err) {
    if (!isGitMirrorError(err, 'SNAPSHOT_CORRUPT')) throw err;
    options.logger?.warn(
      { repo: options.repo.id, err: describeError(err) },
      'replacing an invalid snapshot manifest',
    );
    return undefined;
  }
}

/** Second resolution, strictly after the current latest: keys stay unique and in publish order. */
function nextStamp(now: Date, replaced: SnapshotManifest | undefined, repo: RepoId): Date {
  const seconds = Math.floor(now.getTime() / 1000) * 1000;
  const latest = replaced ? parseArchiveKey(repo, replaced.key)?.createdAt.getTime() : undefined;
  return new Date(latest !== undefined && latest >= seconds ? latest + 1000 : seconds);
}

/**
 * Writes the archive into the store and returns its digest as the archiver measured it. A
 * store of local files takes the archive straight from the archive workers, written in
 * parallel at each piece's offset; others get it as a stream.
 */
async function uploadArchive(options: PublishOptions, key: string): Promise<ArchiveDigest> {
  const { store, mirrorDir, signal } = options;
  const archiveOptions = { ...options.archive, signal };
  let digest: ArchiveDigest | undefined;
  let stored: ObjectInfo;
  if (store.putFile) {
    stored = await store.putFile(
      key,
      async (path) => {
        digest = await writeArchiveFile(mirrorDir, path, archiveOptions);
      },
      { signal },
    );
  } else {
    const archive = createArchiveStream(mirrorDir, archiveOptions);
    try {
      stored = await store.put(key, archive, { signal, contentType: 'application/zstd' });
    } catch (err) {
      // Stop the archiver now rather than let it archive the rest of the mirror for nobody.
      archive.destroy();
      throw err;
    }
    digest = archive.digest;
  }
  if (!digest || stored.sizeBytes !== digest.sizeBytes) {
    await store.delete(key).catch(() => {});
    throw new GitMirrorError(
      'SNAPSHOT_STORE_FAILED',
      `${store.description} stored ${stored.sizeBytes} bytes of ${key}, expected ${digest?.sizeBytes}`,
    );
  }
  return digest;
}

async function commitManifest(options: PublishOptions, manifest: SnapshotManifest): Promise<void> {
  try {
    if (options.signal?.aborted)
      throw new GitMirrorError('ABORTED', `publishing ${manifest.key} was cancelled`);
    await writeManifest(options.store, options.repo, manifest);
  } catch (err) {
    // Nothing names the archive yet: remove it now rather than leave it to the orphan sweep.
    await options.store.delete(manifest.key).catch(() => {});
    throw err;
  }
}

async function prune(
  options: PublishOptions,
  manifest: SnapshotManifest,
  replaced: SnapshotManifest | undefined,
): Promise<void> {
  const { store, repo, logger } = options;
  const now = options.now?.() ?? new Date();
  try {
    const orphanGraceMs = options.orphanGraceMs ?? DEFAULT_ORPHAN_GRACE_MS;
    const { deleted, failed } = await pruneArchives(store, { repo, manifest, replaced, now, orphanGraceMs });
    if (deleted.length > 0) logger?.info({ repo: repo.id, deleted }, 'pruned old snapshots');
    for (const { key, error } of failed)
      logger?.warn({ repo: repo.id, key, err: describeError(error) }, 'could not delete an old snapshot');
  } catch (err) {
    // The snapshot is published; pruning is retried by the next publish.
    logger?.warn({ repo: repo.id, err: describeError(err) }, 'pruning snapshots failed');
  }
}
