import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { git } from '../../testing/git.ts';
import { commitLfsFiles, lfsEnvironment } from '../../testing/lfs-client.ts';
import { type LfsTestServer, startLfsTestServer } from '../support/lfs-server.ts';
import { PushLoop, type PushLoopOptions } from './pusher.ts';
import type { LfsCheck } from './record.ts';
import { parseRefs, RefHistory } from './ref-history.ts';

/**
 * The soak's LFS repository: git-lfs's own test server (lfstest-gitserver, built by
 * e2e/tools) holds it, git and LFS objects both, exposed on the pod network. A pusher adds or
 * replaces one LFS file on `main` every few seconds through git-lfs's real pre-push upload,
 * and remembers every object it uploaded: what upstream holds. A client's LFS checkout is
 * judged against that (`verifyLfsCheckout`).
 *
 * Upstream faults of the chaos schedule do not reach this server (it is not behind the
 * fault proxy): see the README's Soak section for why.
 */

export const LFS_REPO = 'lfs';
/** lfstest-gitserver's one account. */
export const LFS_CREDENTIALS = { username: 'user', password: 'pass' };
/** LFS files in the tree: each push replaces one of them, so a checkout stays this size. */
const FILES = 8;
const FILE_BYTES = { min: 64 * 1024, max: 1024 * 1024 };

export interface LfsUpstream {
  server: LfsTestServer;
  /** `host:port` where the pods reach it. */
  host: string;
  pusher: LfsPusher;
  /** A git-lfs client's environment that answers the LFS API's 401 with the account. */
  clientEnv: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export async function startLfsUpstream(options: {
  listenHost: string;
  dir: string;
  random: () => number;
  intervalMs: { min: number; max: number };
  log: (line: string) => void;
}): Promise<LfsUpstream> {
  const server = await startLfsTestServer();
  try {
    const host = await server.exposeOn(options.listenHost);
    await server.createRepo(LFS_REPO);
    const pusherEnv = await lfsEnvironment(join(options.dir, 'lfs-pusher-home'));
    const { username, password } = LFS_CREDENTIALS;
    await writeFile(join(pusherEnv.HOME!, 'credentials'), `http://${username}:${password}@${server.host}\n`);
    const work = join(options.dir, 'lfs-pusher-work');
    await git(['clone', '--quiet', `${server.url}/${LFS_REPO}.git`, work], { env: pusherEnv });
    await git(['checkout', '--quiet', '-b', 'main'], { cwd: work, env: pusherEnv });
    const pusher = await LfsPusher.create({
      name: LFS_REPO,
      bare: join(server.reposDir, `${LFS_REPO}.git`),
      work,
      env: pusherEnv,
      random: options.random,
      intervalMs: options.intervalMs,
      log: options.log,
    });
    const clientEnv = await lfsEnvironment(join(options.dir, 'lfs-client-home'));
    // A CI runner's token: given whenever the cache relays upstream's 401 (objects it lacks).
    await git(
      [
        'config',
        '--global',
        'credential.helper',
        `!f() { test "$1" = get && printf 'username=${username}\\npassword=${password}\\n'; }; f`,
      ],
      { env: clientEnv },
    );
    return { server, host, pusher, clientEnv, stop: () => server.stop() };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

interface LfsPusherOptions extends PushLoopOptions {
  /** The upstream's bare repository on disk (read after a failed push). */
  bare: string;
  /** A clone of it with a work tree, pushing over HTTP. */
  work: string;
  env: NodeJS.ProcessEnv;
}

export class LfsPusher extends PushLoop {
  readonly history: RefHistory;
  /** Every LFS object uploaded to upstream, oid → size: what upstream holds. */
  readonly held: Map<string, number>;
  private readonly options: LfsPusherOptions;
  private seq = 0;

  private constructor(options: LfsPusherOptions, history: RefHistory, held: Map<string, number>) {
    super(options);
    this.options = options;
    this.history = history;
    this.held = held;
  }

  /** Pushes the first FILES objects, then starts the history from what upstream has. */
  static async create(options: LfsPusherOptions): Promise<LfsPusher> {
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < FILES; i++) files[fileName(i)] = content(options.random);
    const held = new Map<string, number>();
    await commitAndPush(options, files, held);
    const refs = parseRefs(
      await git(['for-each-ref', '--format=%(objectname) %(refname)'], { cwd: options.bare }),
    );
    return new LfsPusher(options, new RefHistory(LFS_REPO, refs, Date.now()), held);
  }

  /** Objects and bytes upstream holds. */
  totals(): { objects: number; bytes: number } {
    return { objects: this.held.size, bytes: [...this.held.values()].reduce((a, b) => a + b, 0) };
  }

  protected async pushOnce(): Promise<void> {
    const n = ++this.seq;
    await commitAndPush(this.options, { [fileName(n % FILES)]: content(this.options.random) }, this.held);
    const sha = (await git(['rev-parse', 'HEAD'], { cwd: this.options.work })).trim();
    this.history.apply({ at: Date.now(), ref: 'refs/heads/main', sha });
  }

  /** After a failed push: what upstream's main now is, recorded. */
  protected async resync(): Promise<void> {
    const actual = await git(['rev-parse', 'refs/heads/main'], { cwd: this.options.bare }).catch(() => '');
    const sha = actual.trim();
    if (sha && this.history.refs().get('refs/heads/main') !== sha)
      this.history.apply({ at: Date.now(), ref: 'refs/heads/main', sha });
  }
}

/**
 * Commits the files through git-lfs's clean filter and pushes; git-lfs's pre-push hook
 * uploads the objects of every commit it pushes before the refs move, so a commit that
 * reaches upstream (in this push or, after a failure, the next) brings its objects.
 */
async function commitAndPush(
  options: LfsPusherOptions,
  files: Record<string, Buffer>,
  held: Map<string, number>,
): Promise<void> {
  const { work, env } = options;
  const ids = await commitLfsFiles(work, files, env, 'soak LFS push');
  for (const { oid, size } of Object.values(ids)) held.set(oid, size);
  await git(['push', '--quiet', 'origin', 'main'], { cwd: work, env, timeoutMs: 120_000 });
}

function content(random: () => number): Buffer {
  const { min, max } = FILE_BYTES;
  return randomBytes(Math.floor(min + random() * (max - min)));
}

const fileName = (i: number) => `assets/asset-${i}.bin`;

/** An LFS pointer as git-lfs writes it: `oid sha256:<hex>` and `size <n>` lines. */
export function parseLfsPointer(text: string): { oid: string; size: number } | undefined {
  if (!text.startsWith('version https://git-lfs.github.com/spec/v1\n')) return undefined;
  const oid = /^oid sha256:([0-9a-f]{64})$/m.exec(text)?.[1];
  const size = /^size (\d+)$/m.exec(text)?.[1];
  return oid && size ? { oid, size: Number(size) } : undefined;
}

/**
 * A clone's LFS files, checked as a client would want them: every `*.bin` in HEAD is a
 * pointer in git, its work-tree file has the pointer's size and sha256 (git-lfs smudged it;
 * a file left as the pointer text fails), and upstream holds that object with that size.
 */
export async function verifyLfsCheckout(
  dir: string,
  upstream: ReadonlyMap<string, number>,
): Promise<LfsCheck> {
  const listing = await git(['ls-files', '-s', '-z', '--', '*.bin'], { cwd: dir });
  const entries = listing
    .split('\0')
    .filter(Boolean)
    .map((line) => {
      const [meta, path] = line.split('\t');
      return { blob: meta!.split(' ')[1]!, path: path! };
    });
  const problems: string[] = [];
  for (const { blob, path } of entries) {
    const pointer = parseLfsPointer(await git(['cat-file', 'blob', blob], { cwd: dir }));
    if (!pointer) {
      problems.push(`${path} is not an LFS pointer in git`);
      continue;
    }
    const content = await readFile(join(dir, path)).catch(() => undefined);
    const oid = content && createHash('sha256').update(content).digest('hex');
    if (!content) problems.push(`${path} is missing from the work tree`);
    else if (oid !== pointer.oid || content.length !== pointer.size)
      problems.push(
        `${path} has ${content.length} bytes, sha256 ${oid?.slice(0, 12)}; its pointer says ${pointer.size}, ${pointer.oid.slice(0, 12)}`,
      );
    else if (upstream.get(pointer.oid) !== pointer.size)
      problems.push(`${path}: upstream never held ${pointer.oid.slice(0, 12)} of ${pointer.size} bytes`);
  }
  if (entries.length === 0) problems.push('no LFS file in the checkout');
  return { objects: entries.length, ...(problems.length && { problem: problems.join('; ') }) };
}
