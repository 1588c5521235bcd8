import type { RepoId } from '../../../core/repo-id.ts';
import type { SnapshotRef } from '../../../core/snapshot.ts';
import { MAX_INDEX_BYTES } from '../archive/archive-layout.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { SnapshotStore } from '../store/store.ts';
import { manifestKey, parseArchiveKey } from './layout.ts';

/**
 * Archive formats, as manifests name them; readers refuse others. Format 1: one zstd frame
 * of the tar, `sha256` of the whole archive. Format 2 (`archive/archive-layout.ts`, written
 * now): the same tar in pieces with an index at the end, `sha256` and `indexBytes` of that
 * index, which holds a sha256 of every piece. `zstd -dc | tar -x` restores both.
 */
export const SNAPSHOT_FORMAT_V1 = 'gitmirror-mirror-tar-zst/1';
export const SNAPSHOT_FORMAT = 'gitmirror-mirror-tar-zst/2';
export type SnapshotFormat = typeof SNAPSHOT_FORMAT_V1 | typeof SNAPSHOT_FORMAT;

/** One published archive: everything a reader needs to fetch it and verify what it got. */
export interface SnapshotRecord extends SnapshotRef {
  /** Format 1: of the whole archive. Format 2: of its index (the last `indexBytes` bytes). */
  sha256: string;
  format: SnapshotFormat;
  /** Format 2: size of the index frame that ends the archive. */
  indexBytes?: number;
  /**
   * The uncompressed tar stream's bytes and its entry count, so a restore knows before it
   * starts how much disk it needs. Absent in manifests of earlier versions.
   */
  unpackedBytes?: number;
  entries?: number;
}

/**
 * `latest.json`: names the newest complete archive of one repo. It is written only after
 * the archive is fully stored, so a reader that trusts only manifests never sees a partial
 * upload.
 */
export interface SnapshotManifest extends SnapshotRecord {
  /** Digest of the mirror's refs when archived, so an unchanged mirror is not re-published. */
  refsDigest?: string;
  /**
   * Archives published before this one and still retained, newest first. Each carries its
   * size and checksum so an older archive can be restored with the same verification as the
   * latest; pruning never removes `previous[0]`.
   */
  previous?: SnapshotRecord[];
}

/**
 * `latest.json` is read from shared storage that other processes write, so it is treated
 * as untrusted input: anything that does not validate is SNAPSHOT_CORRUPT and never used
 * to pick, verify or prune an archive.
 */

/** A real manifest is a few KiB; refusing big ones keeps a hostile object from costing memory. */
const MAX_MANIFEST_BYTES = 1024 * 1024;
const MAX_PREVIOUS = 100;
const SHA256 = /^[0-9a-f]{64}$/;
const REFS_DIGEST = /^[0-9A-Za-z:_-]{1,128}$/;

function corrupt(repo: RepoId, detail: string): never {
  throw new GitMirrorError('SNAPSHOT_CORRUPT', `snapshot manifest of ${repo.id} is invalid: ${detail}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A record's format: the manifest names the latest one's; a `previous` record written before
 * format 2 existed names none and is format 1.
 */
function validateRecord(
  value: unknown,
  repo: RepoId,
  where: string,
  defaultFormat?: SnapshotFormat,
): SnapshotRecord {
  if (!isObject(value)) corrupt(repo, `${where} is not an object`);
  const { key, commit, createdAt, sizeBytes, sha256, indexBytes } = value;
  const format = value.format ?? defaultFormat;
  if (format !== SNAPSHOT_FORMAT && format !== SNAPSHOT_FORMAT_V1)
    corrupt(repo, `${where} has unknown format ${JSON.stringify(value.format)?.slice(0, 100)}`);
  if (typeof key !== 'string') corrupt(repo, `${where}.key is missing`);
  const parts = parseArchiveKey(repo, key);
  if (!parts) corrupt(repo, `${where}.key "${key.slice(0, 200)}" is not an archive key of this repo`);
  if (commit !== parts.commit) corrupt(repo, `${where}.commit does not match its key`);
  if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt)))
    corrupt(repo, `${where}.createdAt is not a timestamp`);
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0)
    corrupt(repo, `${where}.sizeBytes is not a non-negative integer`);
  if (typeof sha256 !== 'string' || !SHA256.test(sha256))
    corrupt(repo, `${where}.sha256 is not a sha256 hex digest`);
  const record: SnapshotRecord = { key, commit: parts.commit, createdAt, sizeBytes, sha256, format };
  Object.assign(record, unpackedSize(value, repo, where));
  if (format === SNAPSHOT_FORMAT_V1) {
    if (indexBytes !== undefined) corrupt(repo, `${where}.indexBytes is not part of format 1`);
    return record;
  }
  if (typeof indexBytes !== 'number' || !Number.isSafeInteger(indexBytes) || indexBytes < 1)
    corrupt(repo, `${where}.indexBytes is not a positive integer`);
  if (indexBytes > MAX_INDEX_BYTES || indexBytes >= sizeBytes)
    corrupt(repo, `${where}.indexBytes does not fit the archive`);
  return { ...record, indexBytes };
}

/** `unpackedBytes` and `entries`, each optional (manifests of earlier versions lack them). */
function unpackedSize(
  value: Record<string, unknown>,
  repo: RepoId,
  where: string,
): Pick<SnapshotRecord, 'unpackedBytes' | 'entries'> {
  const counts: Pick<SnapshotRecord, 'unpackedBytes' | 'entries'> = {};
  for (const field of ['unpackedBytes', 'entries'] as const) {
    const n = value[field];
    if (n === undefined) continue;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
      corrupt(repo, `${where}.${field} is not a non-negative integer`);
    counts[field] = n;
  }
  return counts;
}

/** Checks shape and that every key lies under this repo's prefix; returns a clean copy. */
export function validateManifest(value: unknown, repo: RepoId): SnapshotManifest {
  if (!isObject(value)) corrupt(repo, 'not a JSON object');
  if (value.format === undefined) corrupt(repo, 'format is missing');
  const manifest: SnapshotManifest = validateRecord(value, repo, 'manifest');
  if (value.refsDigest !== undefined) {
    if (typeof value.refsDigest !== 'string' || !REFS_DIGEST.test(value.refsDigest))
      corrupt(repo, 'refsDigest is malformed');
    manifest.refsDigest = value.refsDigest;
  }
  if (value.previous !== undefined) {
    if (!Array.isArray(value.previous) || value.previous.length > MAX_PREVIOUS)
      corrupt(repo, `previous must be an array of at most ${MAX_PREVIOUS} entries`);
    manifest.previous = value.previous.map((p, i) =>
      validateRecord(p, repo, `previous[${i}]`, SNAPSHOT_FORMAT_V1),
    );
    if (manifest.previous.some((p) => p.key === manifest.key))
      corrupt(repo, 'previous repeats the latest key');
  }
  return manifest;
}

/** The repo's manifest, or undefined when none was ever published. */
export async function readManifest(
  store: SnapshotStore,
  repo: RepoId,
): Promise<SnapshotManifest | undefined> {
  const bytes = await store.getBytes(manifestKey(repo));
  if (bytes === undefined) return undefined;
  if (bytes.length > MAX_MANIFEST_BYTES) corrupt(repo, `larger than ${MAX_MANIFEST_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    corrupt(repo, 'not valid JSON');
  }
  return validateManifest(parsed, repo);
}

/** Validates before writing, so this process never publishes what it would refuse to read. */
export async function writeManifest(
  store: SnapshotStore,
  repo: RepoId,
  manifest: SnapshotManifest,
): Promise<void> {
  const clean = validateManifest(manifest, repo);
  const body = Buffer.from(`${JSON.stringify(clean, null, 2)}\n`, 'utf8');
  await store.putBytes(manifestKey(repo), body, { contentType: 'application/json' });
}

/** The record of `key` if the manifest vouches for it (latest or a retained previous one). */
export function findRecord(manifest: SnapshotManifest, key: string): SnapshotRecord | undefined {
  if (manifest.key === key) return recordOf(manifest);
  return manifest.previous?.find((p) => p.key === key);
}

export function recordOf(manifest: SnapshotManifest): SnapshotRecord {
  const { key, commit, createdAt, sizeBytes, sha256, format, indexBytes, unpackedBytes, entries } = manifest;
  return {
    key,
    commit,
    createdAt,
    sizeBytes,
    sha256,
    format,
    ...(indexBytes === undefined ? {} : { indexBytes }),
    ...(unpackedBytes === undefined ? {} : { unpackedBytes }),
    ...(entries === undefined ? {} : { entries }),
  };
}
