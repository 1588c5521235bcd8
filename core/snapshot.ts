/**
 * A published snapshot as both programs name it: the sidecar's manifest records, its admin
 * status (`latestSnapshot`) and the GitMirror's `status.latestSnapshot` all carry these fields.
 */
export interface SnapshotRef {
  /** Store key of the archive, `{host}/{path}/{UTC timestamp}-{commit}.tar.zst`. */
  key: string;
  /** The mirror's HEAD when archived. */
  commit: string;
  /** RFC 3339. */
  createdAt: string;
  sizeBytes: number;
}

/**
 * Archives kept per repository, the newest included, is never below this: pruning keeps the
 * archive `latest.json` names and the one before it, so a replica that is restoring the
 * previous one never loses it. The CRD's `snapshot.retain` rule says the same (a test checks).
 */
export const MIN_SNAPSHOT_RETAIN = 2;

/** A requested retention, raised to the minimum. */
export function snapshotRetain(requested: number): number {
  return Math.max(MIN_SNAPSHOT_RETAIN, requested);
}
