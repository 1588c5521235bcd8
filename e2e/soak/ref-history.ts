import { createHash } from 'node:crypto';

/**
 * Every state an upstream repository's refs went through during a run, in order. The soak's
 * pushers change one ref per push (a push of several refs is not atomic for readers), so the
 * states form one sequence and any reader sees one of them: a client that got refs that are
 * none of these states got something upstream never had.
 */

/** Ref name (`refs/heads/main`, `refs/tags/v1`) → object id. */
export type Refs = Map<string, string>;

export interface RefChange {
  /** Date.now() when the push that made it returned. */
  at: number;
  ref: string;
  /** The new value; null for a deletion. */
  sha: string | null;
}

export interface RefHistoryJson {
  repo: string;
  startedAt: number;
  initial: Record<string, string>;
  changes: RefChange[];
}

export class RefHistory {
  readonly repo: string;
  readonly startedAt: number;
  readonly changes: RefChange[] = [];
  private readonly initial: Record<string, string>;
  private readonly current: Refs;
  /** State digest → the indexes with those refs (a force-push back can repeat a state). */
  private readonly states = new Map<string, number[]>();
  /** Ref → every value it ever had. */
  private readonly values = new Map<string, Set<string>>();

  constructor(repo: string, initial: Refs, startedAt: number) {
    this.repo = repo;
    this.startedAt = startedAt;
    this.initial = Object.fromEntries(initial);
    this.current = new Map(initial);
    this.remember(0);
  }

  static fromJson(json: RefHistoryJson): RefHistory {
    const history = new RefHistory(json.repo, new Map(Object.entries(json.initial)), json.startedAt);
    for (const change of json.changes) history.apply(change);
    return history;
  }

  toJSON(): RefHistoryJson {
    return { repo: this.repo, startedAt: this.startedAt, initial: this.initial, changes: this.changes };
  }

  /** Records a push; returns the index of the state it made. */
  apply(change: RefChange): number {
    if (change.sha === null) this.current.delete(change.ref);
    else this.current.set(change.ref, change.sha);
    this.changes.push(change);
    this.remember(this.changes.length);
    return this.changes.length;
  }

  /** Index of the newest state: 0 is the state before the first push. */
  get latest(): number {
    return this.changes.length;
  }

  refs(): Refs {
    return new Map(this.current);
  }

  /** When state `index` began (the push that made it returned). */
  since(index: number): number {
    return index === 0 ? this.startedAt : this.changes[index - 1]!.at;
  }

  /** The newest state equal to `refs`, or undefined when upstream never had these refs. */
  indexOf(refs: Refs): number | undefined {
    return this.states.get(digest(refs))?.at(-1);
  }

  /** Whether `ref` ever pointed at `sha`. */
  everHad(ref: string, sha: string): boolean {
    return this.values.get(ref)?.has(sha) ?? false;
  }

  /**
   * For refs that are no state of upstream's: the state among those around `at` that they
   * differ least from, and each difference (`ref: got X, upstream Y`), so a report says what
   * a client saw instead of only that it was wrong.
   */
  nearest(refs: Refs, at: number, around = 20): { state: number; differences: string[] } {
    const center = this.stateAt(at);
    const from = Math.max(0, center - around);
    const to = Math.min(this.changes.length, center + around);
    const state = new Map(Object.entries(this.initial));
    for (let i = 0; i < from; i++) applyTo(state, this.changes[i]!);
    let best = { state: from, differences: compare(refs, state) };
    for (let i = from; i < to; i++) {
      applyTo(state, this.changes[i]!);
      const differences = compare(refs, state);
      if (differences.length < best.differences.length) best = { state: i + 1, differences };
    }
    return best;
  }

  /** The newest state that had begun by `at`. */
  stateAt(at: number): number {
    let index = this.changes.length;
    while (index > 0 && this.changes[index - 1]!.at > at) index--;
    return index;
  }

  private remember(index: number): void {
    const key = digest(this.current);
    const list = this.states.get(key) ?? [];
    list.push(index);
    this.states.set(key, list);
    for (const [ref, sha] of this.current) {
      const seen = this.values.get(ref) ?? new Set();
      seen.add(sha);
      this.values.set(ref, seen);
    }
  }
}

function applyTo(refs: Refs, change: RefChange): void {
  if (change.sha === null) refs.delete(change.ref);
  else refs.set(change.ref, change.sha);
}

function compare(got: Refs, upstream: Refs): string[] {
  const short = (sha: string | undefined) => (sha ? sha.slice(0, 10) : 'none');
  const names = new Set([...got.keys(), ...upstream.keys()]);
  return [...names]
    .filter((ref) => got.get(ref) !== upstream.get(ref))
    .sort()
    .map((ref) => `${ref}: got ${short(got.get(ref))}, upstream ${short(upstream.get(ref))}`);
}

export function digest(refs: Refs): string {
  const lines = [...refs].map(([ref, sha]) => `${sha} ${ref}`).sort();
  return createHash('sha1').update(lines.join('\n')).digest('hex');
}

/**
 * Parses `git ls-remote` output (or `for-each-ref --format='%(objectname) %(refname)'`) into
 * upstream's namespace: branches and tags only, peeled `^{}` lines and HEAD left out.
 */
export function parseRefs(text: string): Refs {
  const refs: Refs = new Map();
  for (const line of text.split('\n')) {
    const [sha, ref] = line.trim().split(/\s+/);
    if (!sha || !ref || ref.endsWith('^{}')) continue;
    if (ref.startsWith('refs/heads/') || ref.startsWith('refs/tags/')) refs.set(ref, sha);
  }
  return refs;
}

/**
 * A clone's refs in upstream's namespace: `refs/remotes/origin/X` is upstream's
 * `refs/heads/X`; tags are tags; the clone's own branches are its own business.
 */
export function cloneRefs(forEachRef: string): Refs {
  const refs: Refs = new Map();
  for (const line of forEachRef.split('\n')) {
    const [sha, ref] = line.trim().split(/\s+/);
    if (!sha || !ref) continue;
    if (ref.startsWith('refs/remotes/origin/') && ref !== 'refs/remotes/origin/HEAD')
      refs.set(`refs/heads/${ref.slice('refs/remotes/origin/'.length)}`, sha);
    else if (ref.startsWith('refs/tags/')) refs.set(ref, sha);
  }
  return refs;
}
