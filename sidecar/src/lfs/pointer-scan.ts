import type { GitRunner } from '../git/git-runner.ts';
import { type LfsObjectId, MAX_POINTER_BYTES, parsePointer } from './oid.ts';

/** Which refs' trees prefetch reads pointers from: HEAD's, or the tip of every ref. */
export type PointerScope = 'Head' | 'AllRefs';

const SCAN_TIMEOUT_MS = 10 * 60_000;
const MAX_LISTING_BYTES = 512 * 1024 * 1024;
/** The shortest pointer git-lfs writes (an empty object's) is well above this. */
const MIN_POINTER_BYTES = 100;

/**
 * The LFS objects the trees at the scope's tips point to, read from a bare mirror with plain
 * git: the tips' trees and their small blobs (`rev-list --objects --no-walk`, blobs over the
 * pointer limit filtered out by git), then the contents of the blobs that could be pointers.
 * History behind the tips is not read: prefetch warms what a checkout of those refs needs.
 */
export async function lfsPointersAt(
  git: GitRunner,
  dir: string,
  scope: PointerScope,
): Promise<LfsObjectId[]> {
  const tips = scope === 'Head' ? await headTip(git, dir) : ['--all'];
  if (tips.length === 0) return [];
  const listing = await git.run({
    args: ['rev-list', '--objects', '--no-walk', `--filter=blob:limit=${MAX_POINTER_BYTES + 1}`, ...tips],
    cwd: dir,
    timeoutMs: SCAN_TIMEOUT_MS,
    maxStdoutBytes: MAX_LISTING_BYTES,
  });
  // Lines are `<id>` (commits) or `<id> <path>` (trees and blobs).
  const ids = [...new Set(listing.stdout.split('\n').map((line) => line.split(' ', 1)[0]!))].filter(Boolean);
  if (ids.length === 0) return [];
  const checked = await git.run({
    args: ['cat-file', '--batch-check=%(objectname) %(objecttype) %(objectsize)'],
    cwd: dir,
    stdin: `${ids.join('\n')}\n`,
    timeoutMs: SCAN_TIMEOUT_MS,
    maxStdoutBytes: MAX_LISTING_BYTES,
  });
  const candidates = checked.stdout
    .split('\n')
    .map((line) => line.split(' '))
    .filter(
      ([, type, size]) =>
        type === 'blob' && Number(size) >= MIN_POINTER_BYTES && Number(size) <= MAX_POINTER_BYTES,
    )
    .map(([id]) => id!);
  if (candidates.length === 0) return [];
  return readPointers(git, dir, candidates);
}

async function headTip(git: GitRunner, dir: string): Promise<string[]> {
  const head = await git
    .run({ args: ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], cwd: dir, timeoutMs: 30_000 })
    .catch(() => undefined);
  const commit = head?.stdout.trim();
  return commit ? [commit] : [];
}

/** `cat-file --batch` of the candidates, parsed from raw bytes (blobs need not be text). */
async function readPointers(git: GitRunner, dir: string, blobs: string[]): Promise<LfsObjectId[]> {
  const proc = git.spawn({ args: ['cat-file', '--batch'], cwd: dir, timeoutMs: SCAN_TIMEOUT_MS });
  proc.stdin.end(`${blobs.join('\n')}\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of proc.stdout) chunks.push(chunk as Buffer);
  await proc.done;
  const out = Buffer.concat(chunks);
  const found = new Map<string, LfsObjectId>();
  let at = 0;
  while (at < out.length) {
    const eol = out.indexOf(0x0a, at);
    if (eol < 0) break;
    const [, type, size] = out.subarray(at, eol).toString('latin1').split(' ');
    at = eol + 1;
    if (type === undefined || size === undefined) continue;
    const length = Number(size);
    const pointer = type === 'blob' ? parsePointer(out.subarray(at, at + length)) : undefined;
    if (pointer) found.set(pointer.oid, pointer);
    at += length + 1;
  }
  return [...found.values()];
}
