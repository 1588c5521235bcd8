import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createUpstreamRepo } from '../../testing/git-repos.ts';
import { type GitHubStandIn, type StandInApp, startGitHubStandIn } from '../../testing/github-standin.ts';
import { removeDir, tempDir } from '../../testing/temp-dir.ts';
import { type GitHubApp, parseGitHubApp } from '../src/app.ts';
import { type GitHubErrorCode, isGitHubError } from '../src/errors.ts';
import { GITHUB_API_VERSION, requestInstallationToken } from '../src/token-api.ts';

/** Installation tokens from the GitHub stand-in, over real HTTP, with GitHub's error answers. */
describe('requesting an installation token', () => {
  let root: string;
  let github: GitHubStandIn;
  let standInApp: StandInApp;
  let installation: string;

  const appFor = (overrides: Record<string, string> = {}): GitHubApp =>
    parseGitHubApp(
      {
        githubAppID: standInApp.appId,
        githubAppInstallationID: installation,
        githubAppPrivateKey: standInApp.privateKeyPem,
        githubAppBaseURL: github.apiUrl,
        ...overrides,
      },
      'test',
    );
  const request = (app: GitHubApp, clockOffsetMs = 0) =>
    requestInstallationToken(app, { now: () => Date.now(), clockOffsetMs });

  async function failsWith(app: GitHubApp, code: GitHubErrorCode, message: RegExp): Promise<void> {
    await assert.rejects(request(app), (err: unknown) => {
      assert.ok(isGitHubError(err, code), String(err));
      assert.match(err.message, message);
      for (const forbidden of ['eyJ', 'PRIVATE KEY', 'ghs_'])
        assert.ok(!err.message.includes(forbidden), err.message);
      return true;
    });
  }

  before(async () => {
    root = await tempDir('gitmirror-github-');
    await createUpstreamRepo(root, 'org/private', 2);
    github = await startGitHubStandIn(root);
    standInApp = github.createApp();
    installation = github.install(standInApp.appId);
  });

  after(async () => {
    await github?.close();
    await removeDir(root);
  });

  it('mints a token with its expiry, sending the headers GitHub documents', async () => {
    const before = Date.now();
    const { token, clockOffsetMs } = await request(appFor());
    assert.match(token.token, /^ghs_/);
    const lifetime = token.expiresAt - token.mintedAt;
    assert.ok(lifetime > 3590_000 && lifetime <= 3600_000, `an hour, less rounding: ${lifetime}`);
    assert.ok(token.mintedAt >= before);
    assert.ok(Math.abs(clockOffsetMs ?? Number.NaN) < 2000, 'learns the offset from Date');
    const last = github.apiRequests.at(-1)!;
    assert.equal(last.status, 201);
    assert.equal(last.path, `/app/installations/${installation}/access_tokens`);
    assert.equal(last.accept, 'application/vnd.github+json');
    assert.equal(last.apiVersion, GITHUB_API_VERSION);
    assert.equal(last.userAgent, 'gitmirror');
  });

  it('reports a key of another App (a bad key) as GitHub does, without the key or the JWT', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs1',
      format: 'pem',
    });
    await failsWith(
      appFor({ githubAppPrivateKey: other.toString() }),
      'GITHUB_APP_UNAUTHORIZED',
      /belong to the same App.*GitHub answered 401: A JSON web token could not be decoded/,
    );
  });

  it('reports a wrong installation id as not found', async () => {
    await failsWith(
      appFor({ githubAppInstallationID: '999' }),
      'GITHUB_APP_INSTALLATION_NOT_FOUND',
      /no installation 999 of App \d+: check githubAppInstallationID.*404: Not Found/,
    );
  });

  it('reports a suspended and an uninstalled installation', async () => {
    const suspended = github.install(standInApp.appId);
    github.suspend(suspended);
    await failsWith(
      appFor({ githubAppInstallationID: suspended }),
      'GITHUB_APP_INSTALLATION_SUSPENDED',
      /is suspended; an owner must unsuspend it.*403: This installation has been suspended/,
    );
    const removed = github.install(standInApp.appId);
    github.uninstall(removed);
    await failsWith(
      appFor({ githubAppInstallationID: removed }),
      'GITHUB_APP_INSTALLATION_NOT_FOUND',
      /whether the App was uninstalled/,
    );
  });

  it('asks only for contents: read and says so when the installation lacks it', async () => {
    const metadataOnly = github.install(standInApp.appId, { permissions: { metadata: 'read' } });
    await failsWith(
      appFor({ githubAppInstallationID: metadataOnly }),
      'GITHUB_APP_PERMISSIONS',
      /Contents \(read\) permission.*422: The permissions requested are not granted/,
    );
  });

  it("signs on GitHub's time when this host's clock is off, learning it from the Date header", async () => {
    for (const skew of [-5 * 60_000, 12 * 60_000]) {
      github.setClockOffset(skew);
      try {
        const before = github.apiRequests.length;
        const { token, clockOffsetMs } = await request(appFor());
        const answers = github.apiRequests.slice(before).map((r) => r.status);
        assert.deepEqual(answers, [401, 201], 'one claim error, one retry on GitHub time');
        assert.ok(Math.abs((clockOffsetMs ?? 0) - skew) < 2000);
        const lifetime = token.expiresAt - Date.now();
        assert.ok(lifetime > 3580_000 && lifetime <= 3600_000, `expiry on our clock: ${lifetime}`);
        // Knowing the offset, the next request is right the first time.
        const again = github.apiRequests.length;
        await request(appFor(), clockOffsetMs);
        assert.deepEqual(
          github.apiRequests.slice(again).map((r) => r.status),
          [201],
        );
      } finally {
        github.setClockOffset(0);
      }
    }
  });

  it('maps rate limits, server errors, odd answers and an unreachable API to retryable errors', async () => {
    const app = appFor();
    const answer = (status: number, body: string, headers: Record<string, string> = {}) =>
      requestInstallationToken(app, {
        now: () => 1_000_000,
        fetch: async () => new Response(body, { status, headers }),
      });
    await assert.rejects(
      answer(403, '{"message":"API rate limit exceeded for installation ID 1."}', {
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': '1060',
      }),
      (err: unknown) =>
        isGitHubError(err, 'GITHUB_API_RATE_LIMITED') && err.retryAfterMs === 60_000 && !err.needsPerson,
    );
    await assert.rejects(
      answer(429, '{"message":"slow down"}', { 'retry-after': '30' }),
      (err: unknown) => isGitHubError(err, 'GITHUB_API_RATE_LIMITED') && err.retryAfterMs === 30_000,
    );
    await assert.rejects(answer(502, '<html>bad gateway</html>'), (err: unknown) => {
      return isGitHubError(err, 'GITHUB_API_UNAVAILABLE') && /GitHub answered 502\)/.test(err.message);
    });
    await assert.rejects(answer(201, '{"token":"short"}'), (err: unknown) =>
      isGitHubError(err, 'GITHUB_API_UNAVAILABLE'),
    );
    await assert.rejects(
      answer(201, '{"token":"ghs_0123456789abcdef","expires_at":"1970-01-01T00:00:00Z"}'),
      (err: unknown) => isGitHubError(err, 'GITHUB_API_UNAVAILABLE'),
    );
    await assert.rejects(
      requestInstallationToken(appFor({ githubAppBaseURL: 'http://127.0.0.1:1/api/v3' }), { now: Date.now }),
      (err: unknown) => isGitHubError(err, 'GITHUB_API_UNAVAILABLE') && /cannot reach/.test(err.message),
    );
  });

  it('never repeats the JWT even when a server echoes the Authorization header', async () => {
    let sent = '';
    await assert.rejects(
      requestInstallationToken(appFor(), {
        now: Date.now,
        fetch: async (_url, init) => {
          sent = String((init!.headers as Record<string, string>).authorization);
          return new Response(JSON.stringify({ message: `bad credentials: ${sent}` }), { status: 401 });
        },
      }),
      (err: unknown) => {
        assert.ok(isGitHubError(err, 'GITHUB_APP_UNAUTHORIZED'));
        assert.ok(!err.message.includes(sent.slice('Bearer '.length)), err.message);
        assert.match(err.message, /bad credentials: Bearer \[redacted\]/);
        return true;
      },
    );
  });
});
