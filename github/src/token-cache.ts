import type { Clock } from '../../core/clock.ts';
import { appIdentity, type GitHubApp } from './app.ts';
import { GitHubError } from './errors.ts';
import { type InstallationToken, requestInstallationToken } from './token-api.ts';

/**
 * Refresh policy. GitHub's tokens live an hour; one is replaced once less than
 * `refreshMarginMs` (30 min) of it is left, minus a random part of `jitterMs` (up to 5 min).
 * Why 30 minutes: the sidecar starts no fetch on a token that would expire before the fetch's
 * own timeout (GITMIRROR_FETCH_TIMEOUT, 10 min), so every token handed out must keep at least
 * that much; the other 20 minutes absorb a GitHub API outage (retried with backoff up to
 * 5 min apart), an operator fail-over and the time to hand the new token to every replica.
 * A token that lives less than twice the margin (a short-lived test token) is refreshed at
 * half its life instead. The jitter spreads installations minted together (an operator start)
 * so they are not all renewed in the same second.
 */
export interface RefreshPolicy {
  refreshMarginMs: number;
  jitterMs: number;
  /** Failed mints are retried after base, doubling to max, with jitter; GitHub's Retry-After wins if longer. */
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export const DEFAULT_REFRESH_POLICY: RefreshPolicy = {
  refreshMarginMs: 30 * 60_000,
  jitterMs: 5 * 60_000,
  backoffBaseMs: 2_000,
  backoffMaxMs: 5 * 60_000,
};

/** What callers and status see of one installation's token; nothing secret. */
export interface TokenState {
  /** When the token in hand expires (our clock), if there is one. */
  expiresAt?: number;
  /** When it will be replaced. */
  refreshAt?: number;
  lastMintAt?: number;
  /** The last mint's error, until a mint succeeds. */
  lastError?: GitHubError;
  /** Consecutive failed mints. */
  failures: number;
  /** No mint is attempted before this (backoff). */
  nextAttemptAt?: number;
}

export type MintOutcome = 'success' | GitHubError['code'];

export interface MintEvent {
  app: GitHubApp;
  outcome: MintOutcome;
  error?: GitHubError;
  /** When the new token expires (our clock), after a success. */
  expiresAt?: number;
  seconds: number;
}

export interface InstallationTokensOptions {
  clock: Clock;
  /** 0 ≤ x < 1; injected so tests are deterministic. */
  random?: () => number;
  policy?: Partial<RefreshPolicy>;
  /** The HTTP call; tests inject a fake, production uses `requestInstallationToken`. */
  mint?: typeof requestInstallationToken;
  fetch?: typeof fetch;
  /** Called after every mint attempt (metrics, logs). Never given the token. */
  onMint?: (event: MintEvent) => void;
}

interface Entry {
  app: GitHubApp;
  token?: InstallationToken;
  refreshAt: number;
  inflight?: Promise<void>;
  state: TokenState;
  lastUsedAt: number;
}

/** Entries unused this long are dropped (a GitMirror deleted or its Secret changed). */
const IDLE_EVICT_MS = 3 * 60 * 60_000;

/**
 * Installation tokens for any number of App installations, one cached token each. Concurrent
 * callers share one mint (single-flight); a token is replaced ahead of expiry (see
 * `RefreshPolicy`); a failed mint backs off, and callers keep the token in hand while it still
 * covers what they need, so a short GitHub outage is invisible.
 */
export class InstallationTokens {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly policy: RefreshPolicy;
  private readonly options: InstallationTokensOptions;
  /** GitHub's clock minus ours, learned from `Date` headers, per API root. */
  private readonly clockOffsets = new Map<string, number>();

  constructor(options: InstallationTokensOptions) {
    this.options = options;
    this.clock = options.clock;
    this.random = options.random ?? Math.random;
    this.policy = { ...DEFAULT_REFRESH_POLICY, ...options.policy };
  }

  /**
   * A token valid for at least `minValidityMs` more. Mints when none is held, when the held
   * one is due for refresh or does not last long enough; throws the mint's `GitHubError` only
   * when no token in hand lasts long enough.
   */
  async get(app: GitHubApp, options: { minValidityMs: number }): Promise<InstallationToken> {
    const entry = this.entry(app);
    const now = this.clock.now();
    entry.lastUsedAt = now;
    if (this.lasts(entry, options) && now < entry.refreshAt) return entry.token!;
    const backingOff = entry.state.nextAttemptAt !== undefined && now < entry.state.nextAttemptAt;
    if (!entry.inflight && backingOff) return this.fallback(entry, options);
    entry.inflight ??= this.mint(entry).finally(() => {
      entry.inflight = undefined;
    });
    await entry.inflight;
    if (this.lasts(entry, options)) return entry.token!;
    if (entry.state.lastError) return this.fallback(entry, options);
    // Minted, yet too short-lived for this caller: minting again would not help.
    const lifetime = Math.round((entry.token!.expiresAt - entry.token!.mintedAt) / 1000);
    throw new GitHubError(
      'GITHUB_API_UNAVAILABLE',
      `GitHub's installation tokens live ${lifetime}s, less than the ${Math.round(options.minValidityMs / 1000)}s an operation needs`,
    );
  }

  private lasts(entry: Entry, options: { minValidityMs: number }): boolean {
    return entry.token !== undefined && entry.token.expiresAt - this.clock.now() > options.minValidityMs;
  }

  /** Status of an installation's token, for conditions and metrics. */
  state(app: GitHubApp): TokenState | undefined {
    const entry = this.entries.get(appIdentity(app));
    return entry ? { ...entry.state } : undefined;
  }

  /**
   * When callers should come back to pick up a refreshed token: the refresh time, or the end
   * of the backoff after a failure.
   */
  nextRefreshAt(app: GitHubApp): number | undefined {
    const entry = this.entries.get(appIdentity(app));
    if (!entry) return undefined;
    return entry.state.nextAttemptAt ?? (entry.token ? entry.refreshAt : undefined);
  }

  private fallback(entry: Entry, options: { minValidityMs: number }): InstallationToken {
    if (this.lasts(entry, options)) return entry.token!;
    throw entry.state.lastError ?? new GitHubError('GITHUB_API_UNAVAILABLE', 'no installation token');
  }

  private async mint(entry: Entry): Promise<void> {
    const { app } = entry;
    const started = this.clock.now();
    try {
      const response = await (this.options.mint ?? requestInstallationToken)(app, {
        now: () => this.clock.now(),
        clockOffsetMs: this.clockOffsets.get(app.baseUrl) ?? 0,
        fetch: this.options.fetch,
      });
      if (response.clockOffsetMs !== undefined) this.clockOffsets.set(app.baseUrl, response.clockOffsetMs);
      const { token } = response;
      entry.token = token;
      entry.refreshAt = this.refreshAt(token);
      entry.state = {
        expiresAt: token.expiresAt,
        refreshAt: entry.refreshAt,
        lastMintAt: token.mintedAt,
        failures: 0,
      };
      const seconds = (this.clock.now() - started) / 1000;
      this.options.onMint?.({ app, outcome: 'success', expiresAt: token.expiresAt, seconds });
    } catch (err) {
      const error =
        err instanceof GitHubError ? err : new GitHubError('GITHUB_API_UNAVAILABLE', 'token request failed');
      const failures = entry.state.failures + 1;
      const delay = Math.max(this.backoff(failures), error.retryAfterMs ?? 0);
      entry.state = { ...entry.state, lastError: error, failures, nextAttemptAt: this.clock.now() + delay };
      this.options.onMint?.({
        app,
        outcome: error.code,
        error,
        seconds: (this.clock.now() - started) / 1000,
      });
    }
  }

  private refreshAt(token: InstallationToken): number {
    const lifetime = token.expiresAt - token.mintedAt;
    const margin = Math.min(this.policy.refreshMarginMs, lifetime / 2);
    const jitter = this.random() * Math.min(this.policy.jitterMs, lifetime / 10);
    return Math.round(token.expiresAt - margin - jitter);
  }

  private backoff(failures: number): number {
    const capped = Math.min(
      this.policy.backoffMaxMs,
      this.policy.backoffBaseMs * 2 ** Math.min(failures - 1, 30),
    );
    // Full jitter over the upper half: spread, never shorter than half the step.
    return Math.round(capped * (0.5 + this.random() / 2));
  }

  private entry(app: GitHubApp): Entry {
    const key = appIdentity(app);
    const now = this.clock.now();
    for (const [other, entry] of this.entries) {
      if (other !== key && !entry.inflight && now - entry.lastUsedAt > IDLE_EVICT_MS)
        this.entries.delete(other);
    }
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { app, refreshAt: 0, state: { failures: 0 }, lastUsedAt: now };
      this.entries.set(key, entry);
    }
    return entry;
  }
}
