import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { type GitHubApp, parseGitHubApp } from '../src/app.ts';
import { GitHubError, type GitHubErrorCode } from '../src/errors.ts';
import type { requestInstallationToken, TokenResponse } from '../src/token-api.ts';
import { InstallationTokens, type MintOutcome } from '../src/token-cache.ts';

const MIN = 60_000;
const PEM = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs1', format: 'pem' })
  .toString();
const APP: GitHubApp = parseGitHubApp(
  { githubAppID: '1', githubAppInstallationID: '2', githubAppPrivateKey: PEM },
  'test',
);

/** A fake GitHub: tokens of a set lifetime, or the next queued failure; counts mints. */
function harness(options: { lifetimeMs?: number; random?: () => number } = {}) {
  const clock = { t: 1_000_000_000_000, now: () => clock.t };
  const failures: GitHubError[] = [];
  const outcomes: MintOutcome[] = [];
  let mints = 0;
  let release: (() => void) | undefined;
  let hold = false;
  const mint: typeof requestInstallationToken = async (): Promise<TokenResponse> => {
    mints++;
    if (hold) await new Promise<void>((r) => (release = r));
    const failure = failures.shift();
    if (failure) throw failure;
    const token = {
      token: `ghs_token${mints}`,
      mintedAt: clock.t,
      expiresAt: clock.t + (options.lifetimeMs ?? 60 * MIN),
    };
    return { token, clockOffsetMs: 0 };
  };
  const tokens = new InstallationTokens({
    clock,
    random: options.random ?? (() => 0),
    mint,
    onMint: (e) => outcomes.push(e.outcome),
  });
  return {
    clock,
    tokens,
    outcomes,
    mints: () => mints,
    fail: (code: GitHubErrorCode, retryAfterMs?: number) =>
      failures.push(new GitHubError(code, `${code} from GitHub`, { retryAfterMs })),
    hold: () => {
      hold = true;
    },
    release: () => {
      hold = false;
      release?.();
    },
    get: (minValidityMs = 10 * MIN) => tokens.get(APP, { minValidityMs }),
  };
}

describe('installation tokens', () => {
  it('share one mint among concurrent callers', async () => {
    const h = harness();
    h.hold();
    const pending = Array.from({ length: 20 }, () => h.get());
    await new Promise((r) => setImmediate(r));
    h.release();
    const tokens = await Promise.all(pending);
    assert.equal(h.mints(), 1);
    assert.equal(new Set(tokens.map((t) => t.token)).size, 1);
  });

  it('keep a token until less than 30 minutes of its hour are left, then mint a new one', async () => {
    const h = harness();
    const first = await h.get();
    h.clock.t += 29 * MIN;
    assert.equal((await h.get()).token, first.token, 'still 31 minutes left');
    assert.equal(h.tokens.nextRefreshAt(APP), first.expiresAt - 30 * MIN);
    h.clock.t += 1 * MIN;
    const second = await h.get();
    assert.notEqual(second.token, first.token);
    assert.equal(h.mints(), 2);
  });

  it('spread refreshes over up to 5 minutes earlier, so installations minted together renew apart', async () => {
    const early = harness({ random: () => 0.999 });
    const token = await early.get();
    const refreshAt = early.tokens.nextRefreshAt(APP)!;
    assert.ok(refreshAt < token.expiresAt - 34.9 * MIN && refreshAt >= token.expiresAt - 35 * MIN);
  });

  it('refresh a short-lived token at half its life (the 90-second tokens of the rotation tests)', async () => {
    const h = harness({ lifetimeMs: 90_000, random: () => 0.5 });
    const token = await h.get(20_000);
    // margin min(30 min, 45 s) plus jitter 0.5 × min(5 min, 9 s)
    assert.equal(h.tokens.nextRefreshAt(APP), token.expiresAt - 45_000 - 4_500);
    h.clock.t += 40_000;
    assert.equal((await h.get(20_000)).token, token.token);
    h.clock.t += 1_000;
    assert.notEqual((await h.get(20_000)).token, token.token);
  });

  it('mint early when a caller needs longer than the token in hand has left', async () => {
    const h = harness();
    const first = await h.get();
    h.clock.t += 15 * MIN;
    assert.equal((await h.get(40 * MIN)).token, first.token, '45 min left');
    assert.notEqual((await h.get(50 * MIN)).token, first.token, 'only 45 min left');
  });

  it('refuse, without minting in a loop, a need longer than any token lives', async () => {
    const h = harness({ lifetimeMs: 90_000 });
    await assert.rejects(h.get(10 * MIN), /tokens live 90s, less than the 600s an operation needs/);
    assert.equal(h.mints(), 1);
  });

  it('back off after a failed mint: 2 s doubling to 5 minutes, never sooner than Retry-After', async () => {
    const h = harness({ random: () => 0.999 });
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) h.fail('GITHUB_API_UNAVAILABLE');
    for (let attempt = 0; attempt < 10; attempt++) {
      await assert.rejects(h.get(), /GITHUB_API_UNAVAILABLE from GitHub/);
      const mints = h.mints();
      await assert.rejects(h.get(), /GITHUB_API_UNAVAILABLE/, 'during backoff: the same error, no request');
      assert.equal(h.mints(), mints);
      const next = h.tokens.state(APP)!.nextAttemptAt!;
      delays.push(Math.round((next - h.clock.t) / 1000));
      h.clock.t = next;
    }
    assert.deepEqual(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    h.fail('GITHUB_API_RATE_LIMITED', 20 * MIN);
    await assert.rejects(h.get(), /RATE_LIMITED/);
    assert.equal(h.tokens.state(APP)!.nextAttemptAt! - h.clock.t, 20 * MIN);
    h.clock.t += 20 * MIN;
    await h.get();
    assert.equal(h.tokens.state(APP)!.failures, 0);
    assert.equal(h.tokens.state(APP)!.lastError, undefined, 'a success clears the error');
  });

  it('keep serving the token in hand while GitHub fails, as long as it covers the need', async () => {
    const h = harness();
    const first = await h.get();
    h.clock.t += 31 * MIN;
    for (let i = 0; i < 2; i++) h.fail('GITHUB_APP_INSTALLATION_SUSPENDED');
    assert.equal((await h.get()).token, first.token, '29 minutes left cover a 10-minute need');
    const state = h.tokens.state(APP)!;
    assert.equal(state.lastError?.code, 'GITHUB_APP_INSTALLATION_SUSPENDED');
    assert.equal(state.lastError?.needsPerson, true);
    h.clock.t += 20 * MIN;
    await assert.rejects(h.get(), /SUSPENDED/, '9 minutes left do not cover 10: the error surfaces');
    assert.deepEqual(h.outcomes, [
      'success',
      'GITHUB_APP_INSTALLATION_SUSPENDED',
      'GITHUB_APP_INSTALLATION_SUSPENDED',
    ]);
    h.clock.t += 5 * MIN;
    assert.notEqual((await h.get()).token, first.token, 'unsuspended: the next attempt mints');
  });

  it('expose state for status and metrics that holds no token', async () => {
    const h = harness();
    const token = await h.get();
    const state = h.tokens.state(APP)!;
    assert.equal(state.expiresAt, token.expiresAt);
    assert.ok(!JSON.stringify(state).includes(token.token));
  });
});
