import { createHash } from 'node:crypto';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import { describeError, GitMirrorError } from '../errors/gitmirror-error.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import { requestUpstream } from './upstream-proxy.ts';

const ALLOW_TTL_MS = 60_000;
const DENY_TTL_MS = 10_000;
const MAX_ENTRIES = 10_000;

export type AccessDecision = 'allowed' | 'needs-credentials' | 'denied';

/**
 * Gate for `access: Private` mirrors: a client is served local data only after upstream
 * accepted its credentials for that repository. Answers are cached briefly, keyed by a
 * hash of (repository, Authorization header) — the secret itself is never kept.
 */
export class UpstreamAccessCheck {
  private readonly cache = new Map<string, { decision: AccessDecision; expires: number }>();
  private readonly inflight = new Map<string, Promise<AccessDecision>>();
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(logger: Logger, clock: Clock) {
    this.logger = logger;
    this.clock = clock;
  }

  async check(mirror: Mirror, authorization: string | undefined): Promise<AccessDecision> {
    if (mirror.settings.access === 'Public') return 'allowed';
    if (!authorization) return 'needs-credentials';
    const key = createHash('sha256').update(`${mirror.id}\0${authorization}`).digest('hex');
    const cached = this.cache.get(key);
    if (cached && cached.expires > this.clock.now()) return cached.decision;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.ask(mirror, authorization).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    const decision = await pending;
    if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
    this.cache.set(key, {
      decision,
      expires: this.clock.now() + (decision === 'allowed' ? ALLOW_TTL_MS : DENY_TTL_MS),
    });
    return decision;
  }

  private async ask(mirror: Mirror, authorization: string): Promise<AccessDecision> {
    try {
      const res = await requestUpstream({
        method: 'GET',
        url: `${mirror.upstream}/info/refs?service=git-upload-pack`,
        headers: { authorization, 'user-agent': 'gitmirror-access-check', via: '1.1 gitmirror' },
        idleTimeoutMs: 15_000,
      });
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) return 'allowed';
      if (status === 401 || status === 403 || status === 404) return 'denied';
      throw new GitMirrorError('UPSTREAM_FAILED', `upstream answered ${status} to the access check`);
    } catch (err) {
      // Fail closed: an unreachable upstream cannot vouch for anyone.
      this.logger.warn({ mirror: mirror.id, err: describeError(err) }, 'access check failed');
      throw err instanceof GitMirrorError ? err : new GitMirrorError('UPSTREAM_FAILED', describeError(err));
    }
  }
}
