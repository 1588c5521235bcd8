import type { RepoId } from '../../../core/repo-id.ts';
import type { SnapshotStore } from '../store/store.ts';
import type { SnapshotManifest } from './manifest.ts';

export interface RestoreProgress {
  phase: 'downloading';
  bytesDone: number;
  bytesTotal?: number;
}

export interface DownloadedSnapshot {
  /** The extracted bare mirror, in a temp dir under `tempParent`. */
  dir: string;
  /** Remove `dir` and its temp parent (after a failed check or once installed). */
  cleanup(): Promise<void>;
  manifest: SnapshotManifest;
}

export type PublishOutcome =
  | { result: 'published'; manifest: SnapshotManifest }
  | { result: 'unchanged'; manifest: SnapshotManifest };

/**
 * What the mirror lifecycle needs from the snapshot layer. Small on purpose: unit tests of
 * the lifecycle swap it, integration tests run the real one over a real store.
 */
export interface SnapshotService {
  readonly store: SnapshotStore;
  latest(repo: RepoId): Promise<SnapshotManifest | undefined>;
  download(
    repo: RepoId,
    options: {
      key?: string;
      tempParent: string;
      signal?: AbortSignal;
      onProgress?: (p: RestoreProgress) => void;
    },
  ): Promise<DownloadedSnapshot>;
  publish(
    repo: RepoId,
    options: { mirrorDir: string; commit: string; refsDigest: string; retain: number; signal?: AbortSignal },
  ): Promise<PublishOutcome>;
}
