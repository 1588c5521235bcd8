import { createHash } from 'node:crypto';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import { describeError, GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import type { UpstreamHosts } from '../upstream/host-gate.ts';
import { throttledError, throttleOf } from '../upstream/throttle.ts';
import { requestUpstream } from './upstream-proxy.ts';

const ALLOW_TTL_MS = 60_000;
const DENY_TTL_MS = 10_000;
const MAX_ENTRIES = 10_000;

export type AccessDecision = 'allowed' | 'needs-credentials' | 'denied';

/**
 * The memory of the Private rule: upstream's verdicts on a client's credentials for a
 * repository, kept 60 s when upstream let the client in and 10 s when it did not, under a
 * hash of (kind of check, repository, Authorization header); the secret itself is never kept.
 * Git's check and the LFS API's both keep theirs here.
 */
export class AccessVerdicts<V> {
  private readonly entries = new Map<string, { verdict: V; expires: number }>();
  private readonly clock: Clock;
  private readonly allowed: (verdict: V) => boolean;

  constructor(options: { clock: Clock; allowed: (verdict: V) => boolean }) {
    this.clock = options.clock;
    this.allowed = options.allowed;
  }

  static keyOf(check: string, repoId: string, authorization: string | undefined): string {
    return createHash('sha256')
      .update(`${check}\0${repoId}\0${authorization ?? ''}`)
      .digest('hex');
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expires > this.clock.now()) return entry.verdict;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, verdict: V): void {
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    const ttl = this.allowed(verdict) ? ALLOW_TTL_MS : DENY_TTL_MS;
    this.entries.set(key, { verdict, expires: this.clock.now() + ttl });
  }
}

/**
 * Gate for `access: Private` mirrors: a client is served local data only after upstream
 * accepted its credentials for that repository (asked once at a time per client and
 * repository, the answer kept as `AccessVerdicts` says).
 */
export class UpstreamAccessCheck {
  private readonly verdicts: AccessVerdicts<AccessDecision>;
  private readonly inflight = new Map<string, Promise<AccessDecision>>();
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly upstream?: UpstreamHosts;

  constructor(logger: Logger, clock: Clock, upstream?: UpstreamHosts) {
    this.logger = logger;
    this.clock = clock;
    this.verdicts = new AccessVerdicts({ clock, allowed: (decision) => decision === 'allowed' });
    this.upstream = upstream;
  }

  async check(mirror: Mirror, authorization: string | undefined): Promise<AccessDecision> {
    if (mirror.settings.access === 'Public') return 'allowed';
    if (!authorization) return 'needs-credentials';
    const key = AccessVerdicts.keyOf('git', mirror.id, authorization);
    const cached = this.verdicts.get(key);
    if (cached) return cached;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.ask(mirror, authorization).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    const decision = await pending;
    this.verdicts.set(key, decision);
    return decision;
  }

  private async ask(mirror: Mirror, authorization: string): Promise<AccessDecision> {
    try {
      const res = await requestUpstream({
        method: 'GET',
        url: `${mirror.upstream}/info/refs?service=git-upload-pack`,
        headers: { authorization, 'user-agent': 'gitmirror-access-check', via: '1.1 gitmirror' },
        idleTimeoutMs: 15_000,
        gate: this.upstream?.gate(mirror.upstream),
      });
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) return 'allowed';
      // A throttle (GitHub sends its rate limit as a 403 too) says nothing about these credentials.
      // The host's gate has already backed off for it (requestUpstream observed the answer).
      const throttle = throttleOf({ status, headers: res.headers }, this.clock.now());
      if (throttle) throw throttledError('the access check', new URL(mirror.upstream).host, throttle);
      if (status === 401 || status === 403 || status === 404) return 'denied';
      throw new GitMirrorError('UPSTREAM_FAILED', `upstream answered ${status} to the access check`);
    } catch (err) {
      // Fail closed: an unreachable upstream cannot vouch for anyone.
      if (!isGitMirrorError(err, 'UPSTREAM_THROTTLED'))
        this.logger.warn({ mirror: mirror.id, err: describeError(err) }, 'access check failed');
      throw err instanceof GitMirrorError ? err : new GitMirrorError('UPSTREAM_FAILED', describeError(err));
    }
  }
}
