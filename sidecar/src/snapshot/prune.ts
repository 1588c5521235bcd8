import type { RepoId } from '../../../core/repo-id.ts';
import type { ObjectInfo, SnapshotStore } from '../store/store.ts';
import { parseArchiveKey, repoPrefix } from './layout.ts';
import type { SnapshotManifest } from './manifest.ts';

/**
 * Which archives of a repo to delete after a publish. The new manifest already lists the
 * retained archives (latest + previous, trimmed to `retain`), so:
 *
 * - archives the new manifest names are kept: that always includes the latest and the one
 *   before it, which a reader holding the older manifest may be downloading right now;
 * - archives only the old manifest named fell out of retention and are deleted;
 * - archives no manifest names are uploads whose manifest write never happened (or is about
 *   to happen, in another writer): deleted only once older than the grace period.
 *
 * Keys that are not archives of this repo (the manifest, nested repos' keys) are never touched.
 */
export interface PruneInput {
  repo: RepoId;
  manifest: SnapshotManifest;
  /** The manifest this publish replaced, if any. */
  replaced: SnapshotManifest | undefined;
  listed: ObjectInfo[];
  now: Date;
  orphanGraceMs: number;
}

export const DEFAULT_ORPHAN_GRACE_MS = 60 * 60 * 1000;

function namedBy(manifest: SnapshotManifest | undefined): Set<string> {
  if (!manifest) return new Set();
  return new Set([manifest.key, ...(manifest.previous ?? []).map((p) => p.key)]);
}

export function planPrune(input: PruneInput): string[] {
  const keep = namedBy(input.manifest);
  const dropped = namedBy(input.replaced);
  const doomed: string[] = [];
  for (const object of input.listed) {
    const parts = parseArchiveKey(input.repo, object.key);
    if (!parts || keep.has(object.key)) continue;
    if (dropped.has(object.key)) {
      doomed.push(object.key);
      continue;
    }
    // The later of the two clocks: a writer with a slow clock must not lose a fresh upload.
    const written = Math.max(parts.createdAt.getTime(), object.lastModified?.getTime() ?? 0);
    if (input.now.getTime() - written > input.orphanGraceMs) doomed.push(object.key);
  }
  return doomed;
}

/** Deletes what `planPrune` picks. A failed delete is reported, not thrown: the next publish retries it. */
export async function pruneArchives(
  store: SnapshotStore,
  input: Omit<PruneInput, 'listed'>,
): Promise<{ deleted: string[]; failed: { key: string; error: unknown }[] }> {
  const listed = await store.list(repoPrefix(input.repo));
  const deleted: string[] = [];
  const failed: { key: string; error: unknown }[] = [];
  for (const key of planPrune({ ...input, listed })) {
    try {
      await store.delete(key);
      deleted.push(key);
    } catch (error) {
      failed.push({ key, error });
    }
  }
  return { deleted, failed };
}
