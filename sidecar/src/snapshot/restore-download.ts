import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { RepoId } from '../../../core/repo-id.ts';
import { type ArchiveCheck, type ArchiveSource, restoreArchive } from '../archive/archive-extract.ts';
import type { ExtractLimits } from '../archive/tar-entry-policy.ts';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { SnapshotStore } from '../store/store.ts';
import {
  findRecord,
  readManifest,
  recordOf,
  SNAPSHOT_FORMAT_V1,
  type SnapshotManifest,
  type SnapshotRecord,
} from './manifest.ts';

export interface DownloadOptions {
  store: SnapshotStore;
  repo: RepoId;
  /**
   * A specific archive instead of the latest. It must be one the current manifest vouches
   * for (latest or a retained previous one): only then are its size and sha256 known, and
   * an archive nobody can verify is never restored.
   */
  key?: string;
  /** Where the temp dir goes; on the data dir's filesystem so the caller can rename it. */
  tempParent: string;
  /** Name prefix of the temp dir, for the caller's sweep of leftovers. */
  tempPrefix?: string;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  limits?: Partial<ExtractLimits>;
}

export interface RestoredSnapshot {
  /** The extracted mirror: a fresh temp dir the caller checks, configures and renames. */
  dir: string;
  /** The manifest that vouched for the archive. */
  manifest: SnapshotManifest;
  /** The archive actually restored (the manifest itself, or one of its `previous`). */
  snapshot: SnapshotRecord;
}

/**
 * Resolve → download → verify and extract into a new temp dir. On any failure the temp
 * dir is removed and a typed error says why: SNAPSHOT_NOT_FOUND (no manifest, unknown key,
 * archive missing), SNAPSHOT_CORRUPT (size, checksum, zstd or tar damage),
 * SNAPSHOT_UNSAFE_ENTRY, SNAPSHOT_STORE_FAILED, ABORTED or RESTORE_FAILED.
 */
export async function downloadAndExtract(options: DownloadOptions): Promise<RestoredSnapshot> {
  const { store, repo, signal } = options;
  const manifest = await readManifest(store, repo);
  if (!manifest)
    throw new GitMirrorError('SNAPSHOT_NOT_FOUND', `no snapshot has been published for ${repo.id}`);
  const snapshot = options.key ? findRecord(manifest, options.key) : recordOf(manifest);
  if (!snapshot)
    throw new GitMirrorError(
      'SNAPSHOT_NOT_FOUND',
      `snapshot ${options.key} of ${repo.id} is not named by its manifest, so it cannot be verified`,
    );
  const local = await openLocal(store, snapshot);
  let dir: string | undefined;
  try {
    dir = await mkdtemp(join(options.tempParent, options.tempPrefix ?? 'restore-'));
    const source: ArchiveSource = {
      fd: local?.fd,
      read: (range, rangeSignal) =>
        openArchive(store, snapshot, { range, signal: anySignal(signal, rangeSignal) }),
    };
    await restoreArchive(source, dir, checkOf(snapshot), {
      signal,
      onProgress: options.onProgress,
      limits: options.limits,
      label: snapshot.key,
    });
    return { dir, manifest, snapshot };
  } catch (err) {
    if (dir) await rm(dir, { recursive: true, force: true });
    throw err;
  } finally {
    await local?.close();
  }
}

function checkOf(snapshot: SnapshotRecord): ArchiveCheck {
  const { sizeBytes, sha256, indexBytes } = snapshot;
  if (snapshot.format === SNAPSHOT_FORMAT_V1 || indexBytes === undefined)
    return { layout: 1, sizeBytes, sha256 };
  return { layout: 2, sizeBytes, sha256, indexBytes };
}

/** The archive's local file, when the store keeps one: the restore workers read it themselves. */
async function openLocal(store: SnapshotStore, snapshot: SnapshotRecord): Promise<FileHandle | undefined> {
  if (!store.localPath) return undefined;
  try {
    return await open(store.localPath(snapshot.key), 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      throw missing(store, snapshot);
    throw new GitMirrorError(
      'SNAPSHOT_STORE_FAILED',
      `opening ${snapshot.key} in ${store.description} failed`,
      {
        cause: err,
      },
    );
  }
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal {
  return AbortSignal.any(signals.filter((s) => s !== undefined));
}

function missing(store: SnapshotStore, snapshot: SnapshotRecord): GitMirrorError {
  return new GitMirrorError(
    'SNAPSHOT_NOT_FOUND',
    `the manifest names ${snapshot.key} but ${store.description} does not have it`,
  );
}

async function openArchive(
  store: SnapshotStore,
  snapshot: SnapshotRecord,
  options: { range: { start: number; end: number }; signal: AbortSignal },
) {
  const { range, signal } = options;
  try {
    // All of it: the store picks its fastest way (S3: parallel ranged reads).
    if (range.start === 0 && range.end === snapshot.sizeBytes - 1)
      return await store.get(snapshot.key, { signal });
    return await store.get(snapshot.key, options);
  } catch (err) {
    if (isGitMirrorError(err, 'SNAPSHOT_NOT_FOUND')) throw missing(store, snapshot);
    throw err;
  }
}
