import type { RepoId } from '../../../core/repo-id.ts';

/**
 * Store keys of one repo's snapshots (relative to the store's prefix):
 *
 *   {host}/{path}/{YYYYMMDDTHHMMSSZ}-{commit}.tar.zst   one archive per publish
 *   {host}/{path}/latest.json                            the manifest naming the newest
 *
 * The timestamp is fixed-width UTC, so lexical key order is publish order and a plain
 * listing sorts newest-last without parsing dates.
 */

export const MANIFEST_NAME = 'latest.json';
export const ARCHIVE_SUFFIX = '.tar.zst';

const STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const ARCHIVE_NAME = /^(\d{8}T\d{6}Z)-([0-9a-f]{40}|[0-9a-f]{64})\.tar\.zst$/;
const COMMIT = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

export interface ArchiveKeyParts {
  /** The timestamp exactly as it appears in the key. */
  stamp: string;
  createdAt: Date;
  commit: string;
}

/** `{host}/{path}/`: every key of the repo starts with it. */
export function repoPrefix(repo: RepoId): string {
  return `${repo.host}/${repo.path}/`;
}

export function manifestKey(repo: RepoId): string {
  return `${repoPrefix(repo)}${MANIFEST_NAME}`;
}

export function isCommitId(value: string): boolean {
  return COMMIT.test(value);
}

/** `2026-11-24T01:55:36.789Z` → `20261124T015536Z` (sub-second part dropped). */
export function formatStamp(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
}

export function parseStamp(stamp: string): Date | undefined {
  const m = STAMP.exec(stamp);
  if (!m) return undefined;
  const date = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  return Number.isNaN(date.getTime()) || formatStamp(date) !== stamp ? undefined : date;
}

export function archiveKey(repo: RepoId, createdAt: Date, commit: string): string {
  if (!isCommitId(commit)) throw new TypeError('commit must be a full lower-case hex object id');
  return `${repoPrefix(repo)}${formatStamp(createdAt)}-${commit}${ARCHIVE_SUFFIX}`;
}

/**
 * The parts of an archive key of this repo, or undefined for anything else: the manifest,
 * foreign names, and keys of nested repos (`org/repo/sub/...` lists under `org/repo/`).
 */
export function parseArchiveKey(repo: RepoId, key: string): ArchiveKeyParts | undefined {
  const prefix = repoPrefix(repo);
  if (!key.startsWith(prefix)) return undefined;
  const m = ARCHIVE_NAME.exec(key.slice(prefix.length));
  if (!m) return undefined;
  const createdAt = parseStamp(m[1]!);
  return createdAt ? { stamp: m[1]!, createdAt, commit: m[2]! } : undefined;
}
