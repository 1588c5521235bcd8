import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GitMirrorError, redactUrl } from '../errors/gitmirror-error.ts';
import { FileSnapshotStore } from './fs-store.ts';
import type { SnapshotStore } from './store.ts';
import { validateListPrefix } from './store-key.ts';

/**
 * `GITMIRROR_SNAPSHOT_STORE` → a store:
 *
 *   file:///abs/path                                   FileSnapshotStore rooted there
 *   s3://bucket[/prefix][?forcePathStyle=true][&partSizeMiB=16]
 *   (unset or empty)                                   file://$DATA_DIR/snapshots
 *
 * S3 credentials never appear in the URL: the SDK's standard chain supplies them.
 * The S3 store is imported only when asked for: loading the AWS SDK costs ~0.16 s of a cold
 * sidecar's start-up, which a file store should not pay.
 */

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const MIB = 1024 * 1024;

function invalid(url: string, why: string): never {
  throw new GitMirrorError('CONFIG_INVALID', `snapshot store "${redactUrl(url).slice(0, 300)}": ${why}`);
}

export async function openSnapshotStore(
  url: string | undefined,
  options: { dataDir: string },
): Promise<SnapshotStore> {
  if (url === undefined || url.trim() === '')
    return new FileSnapshotStore(join(resolve(options.dataDir), 'snapshots'));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return invalid(url, 'not a URL; expected file:///path or s3://bucket/prefix');
  }
  if (parsed.username || parsed.password) invalid(url, 'credentials do not belong in the URL');
  if (parsed.hash) invalid(url, 'fragments are not allowed');
  if (parsed.protocol === 'file:') return openFileStore(url, parsed);
  if (parsed.protocol === 's3:') return openS3Store(url, parsed);
  return invalid(url, `unsupported scheme "${parsed.protocol}"; expected file: or s3:`);
}

function openFileStore(url: string, parsed: URL): SnapshotStore {
  if (parsed.host !== '' && parsed.host !== 'localhost') invalid(url, 'file URLs must not name a host');
  if (parsed.search) invalid(url, 'file URLs take no query parameters');
  const path = fileURLToPath(parsed);
  if (!isAbsolute(path)) invalid(url, 'path must be absolute');
  return new FileSnapshotStore(path);
}

async function openS3Store(url: string, parsed: URL): Promise<SnapshotStore> {
  const bucket = parsed.hostname;
  if (!BUCKET.test(bucket) || parsed.port) invalid(url, 'bucket name is not valid');
  // URL parsing quietly resolves `.`/`..` segments; refuse them rather than guess what was meant.
  const rawPath = url.slice(url.indexOf(bucket) + bucket.length).split('?')[0] ?? '';
  if (/(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i.test(rawPath)) invalid(url, '"." and ".." segments are not allowed');
  const prefix = decodeURIComponent(parsed.pathname).replace(/^\/+|\/+$/g, '');
  try {
    validateListPrefix(prefix);
  } catch {
    invalid(url, 'prefix contains empty, "." or ".." segments or forbidden characters');
  }
  let forcePathStyle = false;
  let partSize: number | undefined;
  for (const [name, value] of parsed.searchParams) {
    if (name === 'forcePathStyle') forcePathStyle = parseBoolean(url, name, value);
    else if (name === 'partSizeMiB') partSize = parsePartSize(url, value);
    else invalid(url, `unknown parameter "${name}"; known: forcePathStyle, partSizeMiB`);
  }
  const { S3SnapshotStore } = await import('./s3-store.ts');
  return new S3SnapshotStore({ bucket, prefix, forcePathStyle, partSize });
}

function parseBoolean(url: string, name: string, value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  return invalid(url, `${name} must be true or false`);
}

function parsePartSize(url: string, value: string): number {
  const mib = Number(value);
  if (!Number.isInteger(mib) || mib < 5 || mib > 5 * 1024)
    invalid(url, 'partSizeMiB must be an integer from 5 to 5120');
  return mib * MIB;
}
