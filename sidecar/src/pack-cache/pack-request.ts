import { createHash } from 'node:crypto';

/**
 * What `git upload-pack` asks of `git pack-objects`, as the packObjectsHook receives it:
 * `git [--shallow-file ""] pack-objects --revs [--thin] --stdout [--shallow] [--progress]
 * [--delta-base-offset] [--include-tag] [--filter=<spec>]` (upload-pack.c, create_pack_file)
 * and, on stdin, `--shallow <oid>` lines, the wants, `--not`, the haves and a blank line.
 */
export interface PackObjectsRequest {
  /** Global options before `pack-objects`: `--shallow-file ""` for shallow requests. */
  globals: string[];
  /** pack-objects' flags without `--progress`, in the order upload-pack gave them. */
  flags: string[];
  /** Whether the client asked for progress (it is on stderr only; the pack is the same). */
  progress: boolean;
  stdin: Buffer;
}

/**
 * Flags upload-pack passes that the cache may run on a client's behalf. Anything else (a
 * newer git's option, `--uri-protocol` for packfile URIs) is answered by pack-objects run
 * the usual way, uncached, rather than guessed at.
 */
const KNOWN_FLAGS = new Set([
  '--revs',
  '--thin',
  '--stdout',
  '--shallow',
  '--delta-base-offset',
  '--include-tag',
]);

/** The pack-objects argv after `git`, or the reason the cache does not take it. */
export function parsePackObjectsArgs(
  argv: readonly string[],
  stdin: Buffer,
): PackObjectsRequest | { unsupported: string } {
  let rest = [...argv];
  const globals: string[] = [];
  if (rest[0] === '--shallow-file' && rest[1] === '') {
    globals.push('--shallow-file', '');
    rest = rest.slice(2);
  }
  if (rest[0] !== 'pack-objects') return { unsupported: `not a pack-objects command: ${rest[0] ?? ''}` };
  const flags: string[] = [];
  let progress = false;
  for (const arg of rest.slice(1)) {
    if (arg === '--progress') progress = true;
    else if (KNOWN_FLAGS.has(arg) || /^--filter=[\x21-\x7e]+$/.test(arg)) flags.push(arg);
    else return { unsupported: `pack-objects argument ${JSON.stringify(arg.slice(0, 64))}` };
  }
  if (!flags.includes('--stdout') || !flags.includes('--revs'))
    return { unsupported: 'pack-objects without --revs --stdout' };
  return { globals, flags, progress, stdin };
}

/** The argv the cache runs: the client's request, always with progress for whoever wants it. */
export function generationArgs(request: PackObjectsRequest): string[] {
  return [...request.globals, 'pack-objects', ...request.flags, '--progress'];
}

/**
 * The cache key: everything that decides which objects the pack holds. Two requests with
 * the same key get the same objects because pack-objects' input names them by id (wants,
 * haves, shallow boundaries, the filter) and git objects never change under an id; fetches
 * and repacks that happen between two requests change how objects are stored, never what
 * an id means. The repository is in the key so one mirror's pack is never another's, and
 * the git version so an upgraded git (whose packs may differ) starts afresh. `--progress`
 * is left out: it changes only what pack-objects prints on stderr.
 */
export function packKey(options: {
  gitVersion: string;
  repoId: string;
  request: PackObjectsRequest;
}): string {
  const { gitVersion, repoId, request } = options;
  const hash = createHash('sha256');
  for (const part of [gitVersion, repoId, ...request.globals, 'pack-objects', ...request.flags]) {
    hash.update(`${Buffer.byteLength(part)}:${part}\n`);
  }
  hash.update(`${request.stdin.length}:`);
  hash.update(request.stdin);
  return hash.digest('hex');
}
