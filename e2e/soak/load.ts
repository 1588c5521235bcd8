import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { git } from '../../testing/git.ts';
import type { Endpoint, ReadyEndpoints } from './endpoints.ts';
import { LFS_REPO, verifyLfsCheckout } from './lfs.ts';
import { pickWeighted } from './pusher.ts';
import type { OpKind, OpRecord } from './record.ts';
import { cloneRefs, parseRefs, type RefHistory, type Refs } from './ref-history.ts';

/**
 * CI-like clients at a fixed rate, each sent to a ready endpoint of the Service the way
 * kube-proxy would pick one (round robin over the EndpointSlices' ready addresses):
 *
 *   clone     `git clone`, as a runner without a workspace does
 *   checkout  what actions/checkout does: `init`, `fetch --depth=1` of the branch, checkout
 *   partial   `git clone --filter=blob:none` (blobs of the checkout fetched lazily)
 *   fetch     `git fetch --prune --prune-tags` in a clone an earlier operation left, as a
 *             runner with a persistent workspace does
 *   lfs       `git clone` of the LFS repository with git-lfs smudging every LFS file through
 *             the cache (its batch API and object URLs), each file then checked against the
 *             object upstream holds (lfs.ts `verifyLfsCheckout`)
 *
 * Every repository an operation leaves is `fsck --strict` checked and its refs looked up in
 * upstream's history. Besides, a prober runs `git ls-remote` through the next endpoint every
 * second (repositories in turn): its answers measure how far served refs lag upstream.
 */

/** Weights by repository: the large one is cloned in full rarely, as CI caches would make it. */
const MIX: [{ kind: Exclude<OpKind, 'ls-remote'>; repo: string }, number][] = [
  [{ kind: 'clone', repo: 'small' }, 3],
  [{ kind: 'checkout', repo: 'small' }, 3],
  [{ kind: 'partial', repo: 'small' }, 1],
  [{ kind: 'fetch', repo: 'small' }, 3],
  [{ kind: 'clone', repo: 'medium' }, 2],
  [{ kind: 'checkout', repo: 'medium' }, 2],
  [{ kind: 'partial', repo: 'medium' }, 1],
  [{ kind: 'fetch', repo: 'medium' }, 2],
  [{ kind: 'clone', repo: 'large' }, 0.6],
  [{ kind: 'checkout', repo: 'large' }, 1.5],
  [{ kind: 'partial', repo: 'large' }, 0.4],
  [{ kind: 'fetch', repo: 'large' }, 1],
  [{ kind: 'lfs', repo: LFS_REPO }, 1.5],
];
/** Clones kept per repository for `fetch` to work in. */
const KEEP_CLONES = 2;
const OP_TIMEOUT_MS = 5 * 60_000;
const PROBE_MS = 1000;

export interface LoadOptions {
  /** Operations started per minute. */
  rate: number;
  /** Started operations beyond this count skip a tick (the machine cannot keep up). */
  maxInFlight: number;
  random: () => number;
  endpoints: ReadyEndpoints;
  url: (endpoint: Endpoint, repo: string) => string;
  histories: Map<string, RefHistory>;
  /** The LFS repository's client environment and the objects its upstream holds. */
  lfs: { env: NodeJS.ProcessEnv; held: ReadonlyMap<string, number> };
  workDir: string;
  ops: OpRecord[];
  skippedTicks: number[];
}

interface Workspace {
  dir: string;
  busy: boolean;
}

export class LoadGenerator {
  private readonly options: LoadOptions;
  private readonly workspaces = new Map<string, Workspace[]>();
  private readonly inFlight = new Set<Promise<void>>();
  private nextId = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(options: LoadOptions) {
    this.options = options;
  }

  async start(): Promise<void> {
    await mkdir(this.options.workDir, { recursive: true });
    this.loops = [this.ticks(), this.probes()];
  }

  /** Stops starting operations and waits for those in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await Promise.all(this.inFlight);
    await rm(this.options.workDir, { recursive: true, force: true });
  }

  private async ticks(): Promise<void> {
    const period = 60_000 / this.options.rate;
    const start = Date.now();
    for (let tick = 0; !this.stopped; tick++) {
      await sleep(Math.max(0, start + tick * period - Date.now()));
      if (this.stopped) break;
      if (this.inFlight.size >= this.options.maxInFlight) {
        this.options.skippedTicks.push(Date.now());
        continue;
      }
      const { kind, repo } = pickWeighted(MIX, this.options.random());
      this.launch(kind, repo);
    }
  }

  private async probes(): Promise<void> {
    const repos = [...this.options.histories.keys()];
    for (let i = 0; !this.stopped; i++) {
      const started = Date.now();
      const repo = repos[i % repos.length]!;
      await this.operate('ls-remote', repo, (url) => this.lsRemote(repo, url));
      await sleep(Math.max(0, PROBE_MS - (Date.now() - started)));
    }
  }

  private launch(kind: Exclude<OpKind, 'ls-remote'>, repo: string): void {
    const work =
      kind === 'fetch'
        ? this.fetchOrClone(repo)
        : kind === 'lfs'
          ? this.operate(kind, repo, (url, dir) => this.lfsClone(repo, url, dir))
          : this.operate(kind, repo, (url, dir) => this.clientOp(kind, repo, url, dir));
    const tracked = work.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Runs one operation through the next ready endpoint and records it. */
  private async operate(
    kind: OpKind,
    repo: string,
    body: (url: string, dir: string) => Promise<Partial<OpRecord>>,
  ): Promise<void> {
    const id = this.nextId++;
    const endpoint = this.options.endpoints.next();
    const start = Date.now();
    const record: OpRecord = { id, kind, repo, pod: endpoint?.pod ?? '(none)', start, end: start, ok: false };
    this.options.ops.push(record);
    if (!endpoint) {
      record.error = 'the Service had no ready endpoint';
      return;
    }
    const dir = join(this.options.workDir, `op-${id}`);
    try {
      Object.assign(record, await body(this.options.url(endpoint, repo), dir));
    } catch (err) {
      record.ok = false;
      record.end = Date.now();
      record.error = shorten((err as Error).message);
    }
  }

  private async fetchOrClone(repo: string): Promise<void> {
    const list = this.workspaces.get(repo) ?? [];
    const workspace = list.find((w) => !w.busy);
    if (!workspace) {
      await this.operate('clone', repo, (url, dir) => this.clientOp('clone', repo, url, dir));
      return;
    }
    workspace.busy = true;
    try {
      await this.operate('fetch', repo, async (url) => {
        const cwd = workspace.dir;
        await git(['remote', 'set-url', 'origin', url], { cwd });
        await git(['fetch', '--quiet', '--prune', '--prune-tags', 'origin'], {
          cwd,
          timeoutMs: OP_TIMEOUT_MS,
        });
        return this.checked(repo, cwd, { refs: 'all' });
      });
    } finally {
      workspace.busy = false;
    }
  }

  private async clientOp(
    kind: 'clone' | 'checkout' | 'partial',
    repo: string,
    url: string,
    dir: string,
  ): Promise<Partial<OpRecord>> {
    let keep = false;
    try {
      if (kind === 'checkout') {
        await git(['init', '--quiet', dir]);
        await git(['remote', 'add', 'origin', url], { cwd: dir });
        await git(
          [
            'fetch',
            '--quiet',
            '--no-tags',
            '--prune',
            '--depth=1',
            'origin',
            '+refs/heads/main:refs/remotes/origin/main',
          ],
          { cwd: dir, timeoutMs: OP_TIMEOUT_MS },
        );
        await git(['checkout', '--quiet', '--force', '-B', 'main', 'refs/remotes/origin/main'], {
          cwd: dir,
          timeoutMs: OP_TIMEOUT_MS,
        });
        return await this.checked(repo, dir, { refs: 'main' });
      }
      const filter = kind === 'partial' ? ['--filter=blob:none'] : [];
      await git(['clone', '--quiet', ...filter, url, dir], { timeoutMs: OP_TIMEOUT_MS });
      const result = await this.checked(repo, dir, { refs: 'all' });
      const list = this.workspaces.get(repo) ?? [];
      if (kind === 'clone' && result.fsck === 'clean' && list.length < KEEP_CLONES) {
        list.push({ dir, busy: false });
        this.workspaces.set(repo, list);
        keep = true;
      }
      return result;
    } finally {
      if (!keep) await rm(dir, { recursive: true, force: true });
    }
  }

  private async lfsClone(repo: string, url: string, dir: string): Promise<Partial<OpRecord>> {
    try {
      await git(['clone', '--quiet', url, dir], { env: this.options.lfs.env, timeoutMs: OP_TIMEOUT_MS });
      const result = await this.checked(repo, dir, { refs: 'all' });
      return { ...result, lfs: await verifyLfsCheckout(dir, this.options.lfs.held) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async lsRemote(repo: string, url: string): Promise<Partial<OpRecord>> {
    const refs = parseRefs(await git(['ls-remote', url], { timeoutMs: OP_TIMEOUT_MS }));
    const end = Date.now();
    return { ok: true, end, ...(await this.lookUp(repo, refs)) };
  }

  /** After git succeeded: the end time, fsck, and the refs looked up in upstream's history. */
  private async checked(
    repo: string,
    dir: string,
    what: { refs: 'all' | 'main' },
  ): Promise<Partial<OpRecord>> {
    const end = Date.now();
    const fsck = await git(['fsck', '--strict', '--no-dangling', '--no-progress'], {
      cwd: dir,
      timeoutMs: OP_TIMEOUT_MS,
    }).then(
      () => 'clean',
      (err: Error) => shorten(err.message),
    );
    const listing = await git(['for-each-ref', '--format=%(objectname) %(refname)'], { cwd: dir });
    const refs = cloneRefs(listing);
    if (what.refs === 'main') {
      const history = this.options.histories.get(repo)!;
      const sha = refs.get('refs/heads/main') ?? '';
      return {
        ok: true,
        end,
        fsck,
        refKnown: await retryLookup(() => history.everHad('refs/heads/main', sha)),
      };
    }
    return { ok: true, end, fsck, ...(await this.lookUp(repo, refs)) };
  }

  private async lookUp(repo: string, refs: Refs): Promise<Pick<OpRecord, 'state' | 'refsDiff'>> {
    const history = this.options.histories.get(repo)!;
    if (await retryLookup(() => history.indexOf(refs) !== undefined))
      return { state: history.indexOf(refs)! };
    const { state, differences } = history.nearest(refs, Date.now());
    return { state: null, refsDiff: `nearest state ${state}: ${differences.slice(0, 6).join('; ')}` };
  }
}

/**
 * A client can see a push a moment before the pusher records it (receive-pack updates the
 * ref before `git push` returns), so a miss is looked up once more a little later.
 */
async function retryLookup(found: () => boolean): Promise<boolean> {
  if (found()) return true;
  await sleep(3000);
  return found();
}

function shorten(message: string): string {
  return message.replace(/\s+/g, ' ').slice(0, 400);
}
