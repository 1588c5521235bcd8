import type { PackDirStats, PackInfo } from './pack-stats.ts';

/**
 * How much disk a write will need before it starts, so a write that cannot fit is refused
 * before its first byte. Each estimate errs high; the growth watch (growth-watch.ts) covers
 * whatever an estimate could not know.
 */

/** The block size files are rounded up to on the filesystems we meet (ext4, xfs, tmpfs). */
export const BLOCK_BYTES = 4096;

/**
 * Manifests written before `unpackedBytes` existed only name the compressed size. A mirror is
 * mostly packs, which zlib already compressed, so zstd gains little: the bench repository's
 * 376 MiB of packs make a 385 MiB archive. A quarter on top covers the small files zstd does
 * shrink (loose refs, indexes) and their block rounding.
 */
export const COMPRESSED_ONLY_FACTOR = 1.25;

/** What a snapshot manifest says of an archive's size. */
export interface ArchiveSize {
  /** The `.tar.zst` in the store. */
  sizeBytes: number;
  /** The uncompressed tar stream: headers, contents padded to 512 bytes, end blocks. */
  unpackedBytes?: number;
  /** Files and directories in the archive. */
  entries?: number;
}

/**
 * Disk bytes a restore of the archive takes. With the uncompressed size and entry count
 * (manifests from this version on) it is a bound: every byte of content is in the tar stream,
 * and each entry wastes less than one block to rounding. Without them it is the compressed
 * size times COMPRESSED_ONLY_FACTOR.
 */
export function restoreBytes(archive: ArchiveSize): number {
  if (archive.unpackedBytes !== undefined && archive.entries !== undefined)
    return archive.unpackedBytes + archive.entries * BLOCK_BYTES;
  return Math.ceil(archive.sizeBytes * COMPRESSED_ONLY_FACTOR);
}

/** Reserved up front for a clone or fetch nobody can size: the growth watch asks for more as it writes. */
export const UNKNOWN_WRITE_BYTES = 16 * 1024 * 1024;

export type CloneBasis = 'snapshot' | 'mirror' | 'unknown';

/**
 * Upstream does not say how big a clone will be. The best guesses, in order: the repository's
 * latest snapshot (a clone after a failed restore, or where a store has one), the mirror this
 * clone replaces, else UNKNOWN_WRITE_BYTES to start with.
 */
export function cloneBytes(hints: { snapshot?: ArchiveSize; mirrorBytes?: number }): {
  bytes: number;
  basis: CloneBasis;
} {
  if (hints.snapshot) return { bytes: restoreBytes(hints.snapshot), basis: 'snapshot' };
  if (hints.mirrorBytes !== undefined && hints.mirrorBytes > 0)
    return { bytes: hints.mirrorBytes, basis: 'mirror' };
  return { bytes: UNKNOWN_WRITE_BYTES, basis: 'unknown' };
}

/**
 * The packs `git repack --geometric=<factor>` rolls into one new pack, by git's own rule
 * (repack.c, split_pack_geometry, git 2.39): packs not pinned by `.keep`, sorted by object
 * count; the largest ones that already grow by `factor` each stay, and so does every heavier
 * pack that is at least `factor` times everything rolled up below it.
 */
export function geometricRollup(packs: readonly PackInfo[], factor = 2): PackInfo[] {
  const sorted = packs.filter((p) => !p.kept).sort((a, b) => a.objects - b.objects);
  if (sorted.length === 0) return [];
  let i = sorted.length - 1;
  for (; i > 0; i--) if (sorted[i]!.objects < factor * sorted[i - 1]!.objects) break;
  let split = i > 0 ? i + 1 : 0;
  let total = 0;
  for (let j = 0; j < split; j++) total += sorted[j]!.objects;
  for (let j = split; j < sorted.length; j++) {
    if (sorted[j]!.objects >= factor * total) break;
    split++;
    total += sorted[j]!.objects;
  }
  return sorted.slice(0, split);
}

/**
 * Temporary disk a geometric repack with a multi-pack-index and bitmaps needs: the new pack is
 * at most the packs it replaces (which stay until it is complete), and the multi-pack-index,
 * bitmaps and commit-graph are written anew beside the old ones before those are deleted.
 */
export function repackTempBytes(stats: PackDirStats & { commitGraphBytes: number }, factor = 2): number {
  const rolled = geometricRollup(stats.packs, factor).reduce((sum, p) => sum + p.bytes, 0);
  return rolled + stats.indexBytes + stats.commitGraphBytes;
}
