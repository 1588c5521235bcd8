import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type GitHubStandIn, type StandInApp, startGitHubStandIn } from '../../testing/github-standin.ts';
import { removeDir, tempDir } from '../../testing/temp-dir.ts';
import type { GitMirror } from '../src/api/gitmirror.ts';
import { errorKind, isOperatorError } from '../src/errors/operator-error.ts';
import { findCondition } from '../src/gitmirror/conditions.ts';
import { harness, REPO_ID, REPO_URL, TOKEN_SECRET } from './fakes/harness.ts';

/**
 * GitMirrors whose credentials Secret holds a GitHub App, against the GitHub stand-in's token
 * API (which checks the JWT as GitHub does): the operator mints one installation token per
 * installation, hands it to every fleet member with its expiry, replaces it ahead of time, and
 * shows GitHub's refusals as conditions, never the key or a token.
 */

type H = ReturnType<typeof harness>;

describe('GitHub App credentials in the operator', () => {
  let root: string;
  let github: GitHubStandIn;
  let app: StandInApp;
  let installation: string;

  before(async () => {
    root = await tempDir();
    github = await startGitHubStandIn(root);
    app = github.createApp();
    installation = github.install(app.appId);
  });

  after(async () => {
    await github.close();
    await removeDir(root);
  });

  function appSecret(overrides: Record<string, string> = {}): Record<string, string> {
    return {
      githubAppID: app.appId,
      githubAppInstallationID: installation,
      githubAppPrivateKey: app.privateKeyPem,
      githubAppBaseURL: github.apiUrl,
      ...overrides,
    };
  }

  /** A fleet of `pods`, GitMirrors `names` of one repository each naming Secret `secret`; the stand-in on the harness's clock. */
  function setup(secret: Record<string, string>, options: { pods?: string[]; names?: string[] } = {}): H {
    const h = harness();
    github.setClockOffset(h.clock.now() - Date.now());
    h.cluster.secrets.set(`ns/${TOKEN_SECRET}`, { token: 'tok' });
    h.cluster.secrets.set('ns/github-app', secret);
    for (const [i, name] of (options.names ?? ['repo']).entries()) {
      const url = i === 0 ? REPO_URL : REPO_URL.replace('repo.git', `${name}.git`);
      h.cluster.addGitMirror(name, { url, credentialsSecretRef: { name: 'github-app' } });
    }
    for (const [i, pod] of (options.pods ?? ['p1', 'p2']).entries())
      h.cluster.addPod(pod, { createdAt: `2026-01-01T00:00:0${i}Z` });
    return h;
  }

  /** Moves the operator's clock and the stand-in's together. */
  function advance(h: H, ms: number): void {
    h.clock.advance(ms);
    github.setClockOffset(h.clock.now() - Date.now());
  }

  /** Both members restored, and the writer published a first snapshot: the steady state. */
  function finish(h: H): void {
    for (const pod of ['p1', 'p2']) {
      const sidecar = h.sidecars.of(`ns/${pod}`);
      sidecar.finish(REPO_ID);
      const mirror = sidecar.mirrors.get(REPO_ID)!;
      const snapshot = { key: 'k', commit: 'c0ffee', createdAt: '2026-01-01T00:04:00Z', sizeBytes: 1 };
      sidecar.mirrors.set(REPO_ID, { ...mirror, latestSnapshot: snapshot });
    }
  }

  const status = (h: H, name = 'repo'): NonNullable<GitMirror['status']> =>
    h.cluster.gitMirrors.get('ns', name)?.status ?? {};
  const condition = (h: H, type: string, name = 'repo') => findCondition(status(h, name).conditions, type);
  const puts = (h: H) => h.sidecars.calls.filter((c) => c.method === 'put');
  const apiMints = () => github.mints.filter((m) => m.source === 'api');

  /** Whatever the operator wrote where people and tools read: status, Events, status patches. */
  function visible(h: H): string {
    return JSON.stringify([h.cluster.events, h.cluster.gitMirrors.list(), h.cluster.statusPatches]);
  }

  test('mints one token, hands it to every member with its expiry, and says so in status', async () => {
    const h = setup(appSecret());
    const before = apiMints().length;
    const result = await h.gm('repo');
    assert.equal(apiMints().length, before + 1);
    const sent = puts(h).map((c) => c.spec?.credentials);
    assert.equal(sent.length, 2);
    assert.equal(sent[0]?.username, 'x-access-token');
    assert.match(sent[0]?.password ?? '', /^ghs_/);
    assert.deepEqual(sent[1], sent[0], 'every member gets the same token');
    const expiresAt = Date.parse(sent[0]?.expiresAt ?? '');
    // GitHub's tokens live an hour; ours is kept a second short of what GitHub says.
    assert.ok(Math.abs(expiresAt - (h.clock.now() + 3_600_000)) <= 2_000, sent[0]?.expiresAt);
    assert.equal(puts(h)[0]?.spec?.access, 'Private');

    const ready = condition(h, 'CredentialsReady');
    assert.equal(ready?.status, 'True');
    assert.equal(ready?.reason, 'TokenMinted');
    const app = status(h).githubApp;
    assert.equal(app?.tokenExpiresTime, sent[0]?.expiresAt);
    // Replaced 30 min before expiry, minus half the 5 min jitter (random fixed at 0.5).
    const refreshAt = Date.parse(app?.refreshTime ?? '');
    assert.ok(Math.abs(refreshAt - (expiresAt - 32.5 * 60_000)) <= 1_000, app?.refreshTime);
    assert.equal(result.requeueAfterMs, 10_000, 'warming: the warming poll comes first');
    assert.ok(!visible(h).includes(sent[0]!.password), 'the token is in no status or Event');
    assert.ok(!visible(h).includes('PRIVATE KEY'));
  });

  test('shares the token among GitMirrors of the installation and with the warm-up of a new pod', async () => {
    const h = setup(appSecret(), { names: ['repo', 'other'] });
    const before = apiMints().length;
    await h.gm('repo');
    await h.gm('other');
    h.cluster.addPod('p3');
    await h.pod('p3');
    assert.equal(apiMints().length, before + 1, 'one mint for the installation');
    const tokens = new Set(puts(h).map((c) => c.spec?.credentials?.password));
    assert.equal(tokens.size, 1);
    assert.ok(puts(h).some((c) => c.pod === 'ns/p3'));
  });

  test('replaces the token at its refresh time, puts it to every member once, and looks again then', async () => {
    const h = setup(appSecret());
    await h.gm('repo');
    finish(h);
    const steady = await h.gm('repo');
    const refreshAt = Date.parse(status(h).githubApp?.refreshTime ?? '');
    assert.equal(steady.requeueAfterMs, 5 * 60_000, 'the steady poll, long before the refresh');
    const mints = apiMints().length;
    const first = puts(h).length;

    advance(h, refreshAt - h.clock.now() - 4 * 60_000);
    const soon = await h.gm('repo');
    // status shows whole seconds: the refresh is due within a second after the time it shows.
    const wait = soon.requeueAfterMs ?? 0;
    assert.ok(
      wait >= 4 * 60_000 && wait < 4 * 60_000 + 1_000,
      `the next pass runs when the token is due: ${wait}`,
    );
    assert.equal(apiMints().length, mints, 'no mint before the refresh time');
    assert.equal(puts(h).length, first, 'nothing new to put');

    advance(h, wait);
    await h.gm('repo');
    assert.equal(apiMints().length, mints + 1);
    const rotated = puts(h).slice(first);
    assert.deepEqual(rotated.map((c) => c.pod).sort(), ['ns/p1', 'ns/p2']);
    assert.notEqual(rotated[0]?.spec?.credentials?.password, puts(h)[0]?.spec?.credentials?.password);
    assert.equal(condition(h, 'CredentialsReady')?.reason, 'TokenMinted');
  });

  test('a new leader mints once and puts the token it got', async () => {
    const h = setup(appSecret());
    await h.gm('repo');
    const mints = apiMints().length;
    h.failover();
    await h.gm('repo');
    await h.gm('repo');
    assert.equal(apiMints().length, mints + 1);
  });

  const refusals: [string, () => Record<string, string>, string, RegExp][] = [
    [
      'a key that is not the App’s',
      () => {
        const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
        return appSecret({ githubAppPrivateKey: other.export({ type: 'pkcs1', format: 'pem' }).toString() });
      },
      'GitHubAppUnauthorized',
      /GitHub rejected the JWT of App \d+: check that githubAppID and githubAppPrivateKey belong to the same App .*A JSON web token could not be decoded/,
    ],
    [
      'a wrong installation id',
      () => appSecret({ githubAppInstallationID: '12345' }),
      'GitHubInstallationNotFound',
      /GitHub has no installation 12345 of App \d+: check githubAppInstallationID, or whether the App was uninstalled \(GitHub answered 404: Not Found\)/,
    ],
    [
      'a suspended installation',
      () => {
        const id = github.install(app.appId);
        github.suspend(id);
        return appSecret({ githubAppInstallationID: id });
      },
      'GitHubInstallationSuspended',
      /installation \d+ of App \d+ is suspended; an owner must unsuspend it \(GitHub answered 403: This installation has been suspended\)/,
    ],
    [
      'an uninstalled App',
      () => {
        const id = github.install(app.appId);
        github.uninstall(id);
        return appSecret({ githubAppInstallationID: id });
      },
      'GitHubInstallationNotFound',
      /GitHub has no installation \d+/,
    ],
    [
      'an App without Contents: read',
      () =>
        appSecret({
          githubAppInstallationID: github.install(app.appId, { permissions: { metadata: 'read' } }),
        }),
      'GitHubAppForbidden',
      /give the App the Contents \(read\) permission/,
    ],
    [
      'a key that is no PEM',
      () => appSecret({ githubAppPrivateKey: 'not a key' }),
      'CredentialsInvalid',
      /secret ns\/github-app: githubAppPrivateKey is not a PEM private key/,
    ],
  ];
  for (const [what, secret, reason, message] of refusals) {
    test(`${what}: stalled, with GitHub's reason in CredentialsReady and Ready, nothing put`, async () => {
      const h = setup(secret());
      await assert.rejects(h.gm('repo'), (err) => errorKind(err) === 'stalled');
      assert.equal(puts(h).length, 0);
      for (const type of ['CredentialsReady', 'Ready', 'Stalled']) {
        const c = condition(h, type);
        assert.equal(c?.reason, reason, type);
        assert.match(c?.message ?? '', message, type);
      }
      assert.equal(condition(h, 'CredentialsReady')?.status, 'False');
      assert.equal(condition(h, 'Stalled')?.status, 'True');
      assert.ok(!visible(h).includes('PRIVATE KEY'), 'no key in status or Events');
      assert.ok(!/eyJ[\w-]+\.eyJ/.test(visible(h)), 'no JWT in status or Events');
    });
  }

  test('a refresh GitHub refuses while the token in hand works: CredentialsReady False, Ready stands, the token stays', async () => {
    const id = github.install(app.appId);
    const h = setup(appSecret({ githubAppInstallationID: id }));
    await h.gm('repo');
    finish(h);
    await h.gm('repo');
    const first = puts(h).length;
    github.suspend(id);
    advance(h, Date.parse(status(h).githubApp?.refreshTime ?? '') + 1_000 - h.clock.now());
    const result = await h.gm('repo');
    const c = condition(h, 'CredentialsReady');
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, 'GitHubInstallationSuspended');
    assert.match(
      c?.message ?? '',
      /is suspended.*; the fleet's installation token is valid until .*, next attempt at /,
    );
    assert.equal(condition(h, 'Ready')?.status, 'True', 'the replicas still serve');
    assert.equal(puts(h).length, first, 'the token in hand is not put again');
    // The failed mint is retried after a backoff of 1–2 s, not at the steady poll.
    assert.ok((result.requeueAfterMs ?? 0) <= 2_000, String(result.requeueAfterMs));
  });

  test('GitHub unreachable: retried with backoff, CredentialsReady says GitHub is unavailable', async () => {
    const h = setup(appSecret({ githubAppBaseURL: 'http://127.0.0.1:1/api/v3' }));
    await assert.rejects(
      h.gm('repo'),
      (err) => isOperatorError(err, 'GITHUB_UNAVAILABLE') && err.kind === 'transient',
    );
    assert.equal(condition(h, 'CredentialsReady')?.reason, 'GitHubUnavailable');
    assert.match(
      condition(h, 'CredentialsReady')?.message ?? '',
      /cannot reach http:\/\/127\.0\.0\.1:1\/api\/v3/,
    );
    assert.equal(condition(h, 'Stalled')?.status, 'False');
  });

  test('credentials removed from the spec: CredentialsReady and githubApp go', async () => {
    const h = setup(appSecret());
    await h.gm('repo');
    assert.ok(status(h).githubApp);
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, credentialsSecretRef: undefined },
    }));
    await h.gm('repo');
    assert.equal(condition(h, 'CredentialsReady'), undefined);
    assert.equal(status(h).githubApp, undefined);
    assert.equal(puts(h).at(-1)?.spec?.credentials, undefined);
  });
});
