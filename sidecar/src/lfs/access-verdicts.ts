import { createHash } from 'node:crypto';

export const ALLOW_TTL_MS = 60_000;
export const DENY_TTL_MS = 10_000;
const MAX_ENTRIES = 10_000;

/** What upstream's LFS API said to a client's credentials for a repository. */
export type LfsVerdict =
  | { allowed: true }
  | {
      allowed: false;
      /** Upstream's answer, replayed while the refusal is cached: status, challenge headers, body. */
      status: number;
      headers: Record<string, string>;
      body: Buffer;
    };

/**
 * The Private rule for LFS: upstream decides whether a client may read a repository's
 * objects, and its verdict is cached briefly (allowed 60 s, refused 10 s, as for git) under a
 * hash of repository and Authorization header, never the secret itself. The verdict comes from
 * upstream's LFS API rather than git's info/refs, because the two may be guarded differently.
 */
export class LfsAccessVerdicts {
  private readonly entries = new Map<string, { verdict: LfsVerdict; expires: number }>();
  private readonly now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.now = options.now ?? Date.now;
  }

  static keyOf(repo: string, authorization: string | undefined): string {
    return createHash('sha256')
      .update(`lfs\0${repo}\0${authorization ?? ''}`)
      .digest('hex');
  }

  get(key: string): LfsVerdict | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expires > this.now()) return entry.verdict;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, verdict: LfsVerdict): void {
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    this.entries.set(key, { verdict, expires: this.now() + (verdict.allowed ? ALLOW_TTL_MS : DENY_TTL_MS) });
  }
}
