import { setTimeout as sleep } from 'node:timers/promises';
import { git } from '../../testing/git.ts';
import type { UpstreamRepo } from '../scenarios/support/environment.ts';
import { parseRefs, RefHistory, type Refs } from './ref-history.ts';

/**
 * An upstream that keeps moving: every few seconds a push to one repository, each changing
 * exactly one ref (new commits on main and on branches, force-pushes that drop commits, tags
 * created and deleted), recorded with its time in the repository's RefHistory.
 *
 * Commits are made in a bare clone beside the upstream (`git fast-import`, no work tree, so
 * the 100k-object repository costs no checkout) and pushed to the upstream's directory: a
 * real receive-pack, as a developer's push would run on the forge.
 */

export type PushKind = 'commit-main' | 'commit-branch' | 'force-push' | 'create-tag' | 'delete-tag';

const WEIGHTS: [PushKind, number][] = [
  ['commit-main', 5],
  ['commit-branch', 2],
  ['force-push', 1.5],
  ['create-tag', 1],
  ['delete-tag', 1],
];
const BRANCHES = ['soak-a', 'soak-b'];
const FORCE_BRANCH = 'soak-force';
const MAX_TAGS = 8;

export interface PushLoopOptions {
  name: string;
  random: () => number;
  /** Pause between pushes: uniform in [min, max]. */
  intervalMs: { min: number; max: number };
  log: (line: string) => void;
}

/**
 * A push every few seconds until stopped, each recorded in `history`; after a failed push,
 * whatever upstream then holds is recorded (`resync`), so the history stays upstream's.
 */
export abstract class PushLoop {
  abstract readonly history: RefHistory;
  errors = 0;
  private readonly loopOptions: PushLoopOptions;
  private stopped = false;
  private loop: Promise<void> | undefined;

  protected constructor(options: PushLoopOptions) {
    this.loopOptions = options;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  protected abstract pushOnce(): Promise<void>;
  protected abstract resync(): Promise<void>;

  private async run(): Promise<void> {
    const { min, max } = this.loopOptions.intervalMs;
    while (!this.stopped) {
      await sleep(min + this.loopOptions.random() * (max - min));
      if (this.stopped) break;
      try {
        await this.pushOnce();
      } catch (err) {
        this.errors++;
        this.loopOptions.log(`pusher ${this.loopOptions.name}: ${(err as Error).message.slice(0, 300)}`);
        await this.resync();
      }
    }
  }
}

export interface PusherOptions extends PushLoopOptions {
  repo: UpstreamRepo;
}

export class Pusher extends PushLoop {
  readonly history: RefHistory;
  readonly counts: Record<PushKind, number> = {
    'commit-main': 0,
    'commit-branch': 0,
    'force-push': 0,
    'create-tag': 0,
    'delete-tag': 0,
  };
  private readonly options: PusherOptions;
  private seq = 0;

  private constructor(options: PusherOptions, history: RefHistory) {
    super(options);
    this.options = options;
    this.history = history;
  }

  static async create(options: PusherOptions): Promise<Pusher> {
    const refs = await upstreamRefs(options.repo.bare);
    return new Pusher(options, new RefHistory(options.name, refs, Date.now()));
  }

  protected pushOnce(): Promise<void> {
    return this.pushKind(pickWeighted(WEIGHTS, this.options.random()));
  }

  private async pushKind(kind: PushKind): Promise<void> {
    const refs = this.history.refs();
    const n = ++this.seq;
    const main = refs.get('refs/heads/main')!;
    const tags = [...refs.keys()].filter((r) => r.startsWith('refs/tags/soak-'));
    if (kind === 'delete-tag' && tags.length === 0) kind = 'create-tag';
    if (kind === 'create-tag' && tags.length >= MAX_TAGS) kind = 'delete-tag';
    this.counts[kind]++;
    switch (kind) {
      case 'commit-main':
        return this.push('refs/heads/main', await this.commit(main, n));
      case 'commit-branch': {
        const branch = `refs/heads/${BRANCHES[n % BRANCHES.length]}`;
        return this.push(branch, await this.commit(refs.get(branch) ?? main, n));
      }
      case 'force-push': {
        // A new commit on the branch's parent: the branch's old tip is dropped from upstream.
        const branch = `refs/heads/${FORCE_BRANCH}`;
        const tip = refs.get(branch);
        const base = tip ? await this.parentOf(tip) : main;
        return this.push(branch, await this.commit(base, n), { force: true });
      }
      case 'create-tag':
        return this.push(`refs/tags/soak-${n}`, main);
      case 'delete-tag':
        return this.push(tags.sort(byNumber)[0]!, null);
    }
  }

  /** A commit on `parent` changing one file, made in the pusher's clone; returns its id. */
  private async commit(parent: string, n: number): Promise<string> {
    const work = this.options.repo.work;
    const content = `push ${n} of the soak to ${this.options.name} at ${new Date().toISOString()}\n`;
    const message = `soak push ${n}\n`;
    const ref = 'refs/soak/next';
    const stream =
      `commit ${ref}\ncommitter Soak <soak@example.invalid> ${Math.floor(Date.now() / 1000)} +0000\n` +
      `data ${Buffer.byteLength(message)}\n${message}from ${parent}\n` +
      `M 100644 inline soak/${this.options.name}-${n % 16}.txt\ndata ${Buffer.byteLength(content)}\n${content}\n`;
    await git(['fast-import', '--quiet', '--force'], { cwd: work, input: stream, timeoutMs: 60_000 });
    return (await git(['rev-parse', ref], { cwd: work })).trim();
  }

  private async parentOf(commit: string): Promise<string> {
    return (await git(['rev-parse', `${commit}^`], { cwd: this.options.repo.work })).trim();
  }

  private async push(ref: string, sha: string | null, options: { force?: boolean } = {}): Promise<void> {
    const spec = sha === null ? `:${ref}` : `${options.force ? '+' : ''}${sha}:${ref}`;
    await git(['push', '--quiet', '--no-verify', this.options.repo.bare, spec], {
      cwd: this.options.repo.work,
      timeoutMs: 60_000,
    });
    this.history.apply({ at: Date.now(), ref, sha });
  }

  /** After a failed push: whatever upstream now holds is recorded, one ref at a time. */
  protected async resync(): Promise<void> {
    const actual = await upstreamRefs(this.options.repo.bare).catch(() => undefined);
    if (!actual) return;
    const known = this.history.refs();
    for (const [ref, sha] of actual)
      if (known.get(ref) !== sha) this.history.apply({ at: Date.now(), ref, sha });
    for (const ref of known.keys())
      if (!actual.has(ref)) this.history.apply({ at: Date.now(), ref, sha: null });
  }
}

async function upstreamRefs(bare: string): Promise<Refs> {
  return parseRefs(await git(['for-each-ref', '--format=%(objectname) %(refname)'], { cwd: bare }));
}

/** The value whose weight band `r` (in [0, 1)) falls in. */
export function pickWeighted<T>(weighted: [T, number][], r: number): T {
  const total = weighted.reduce((s, [, w]) => s + w, 0);
  let x = r * total;
  for (const [value, w] of weighted) {
    x -= w;
    if (x < 0) return value;
  }
  return weighted.at(-1)![0];
}

const byNumber = (a: string, b: string) => Number(a.split('-').pop()) - Number(b.split('-').pop());
