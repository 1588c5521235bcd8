import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../testing/git.ts';
import { createUpstreamRepo } from '../../testing/git-repos.ts';
import { type GitHubStandIn, type StandInApp, startGitHubStandIn } from '../../testing/github-standin.ts';
import { removeDir, tempDir } from '../../testing/temp-dir.ts';

/**
 * The stand-in must refuse what GitHub refuses, or the tests that rely on it prove nothing:
 * JWTs are crafted here by hand, independently of `github/src/jwt.ts`.
 */
describe('the GitHub stand-in', () => {
  let root: string;
  let github: GitHubStandIn;
  let app: StandInApp;
  let installation: string;

  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  function jwt(claims: Record<string, unknown>, options: { alg?: string; key?: string } = {}): string {
    const head = b64({ alg: options.alg ?? 'RS256', typ: 'JWT' });
    const input = `${head}.${b64(claims)}`;
    const signature =
      options.alg === 'HS256'
        ? createHmac('sha256', 'guess').update(input).digest()
        : sign('sha256', Buffer.from(input), createPrivateKey(options.key ?? app.privateKeyPem));
    return `${input}.${signature.toString('base64url')}`;
  }
  const now = () => Math.floor(Date.now() / 1000);
  const claims = (overrides: Record<string, unknown> = {}) => ({
    iat: now() - 60,
    exp: now() + 540,
    iss: app.appId,
    ...overrides,
  });

  async function post(
    token: string | undefined,
    options: { id?: string; headers?: Record<string, string>; body?: string } = {},
  ) {
    const res = await fetch(
      `${github.apiUrl}/app/installations/${options.id ?? installation}/access_tokens`,
      {
        method: 'POST',
        headers: {
          accept: 'application/vnd.github+json',
          'user-agent': 'test',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...options.headers,
        },
        body: options.body ?? JSON.stringify({ permissions: { contents: 'read' } }),
      },
    );
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  }

  before(async () => {
    root = await tempDir('gitmirror-standin-');
    await createUpstreamRepo(root, 'org/private', 2);
    github = await startGitHubStandIn(root, { tokenLifetimeSeconds: 2 });
    app = github.createApp();
    installation = github.install(app.appId);
  });

  after(async () => {
    await github?.close();
    await removeDir(root);
  });

  it('mints a ghs_ token for a valid JWT, answering 201 with expires_at', async () => {
    const { status, body } = await post(jwt(claims()), { headers: { 'x-github-api-version': '2022-11-28' } });
    assert.equal(status, 201);
    assert.match(body.token!, /^ghs_[A-Za-z0-9]{36}$/);
    assert.match(body.expires_at!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('refuses JWTs GitHub refuses, with its messages', async () => {
    const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs1', format: 'pem' })
      .toString();
    const decode = 'A JSON web token could not be decoded';
    const cases: [string, string | undefined, number, string][] = [
      ['no Authorization', undefined, 401, 'Requires authentication'],
      ['not a JWT', 'abc.def', 401, decode],
      ['another key', jwt(claims(), { key: otherKey }), 401, decode],
      ['HS256', jwt(claims(), { alg: 'HS256' }), 401, decode],
      ['unknown App', jwt(claims({ iss: '1' })), 401, decode],
      ['iat in the future', jwt(claims({ iat: now() + 30 })), 401, "'Issued at' claim ('iat')"],
      ['iat not an integer', jwt(claims({ iat: now() - 60.5 })), 401, "'Issued at' claim ('iat')"],
      [
        'expired',
        jwt(claims({ iat: now() - 700, exp: now() - 100 })),
        401,
        "claim ('exp') must be a numeric value",
      ],
      ['exp past 10 minutes', jwt(claims({ iat: now(), exp: now() + 660 })), 401, 'too far in the future'],
      [
        'exp over 10 minutes after iat',
        jwt(claims({ iat: now() - 120, exp: now() + 540 })),
        401,
        'too far in the future',
      ],
    ];
    for (const [name, token, status, message] of cases) {
      const answer = await post(token);
      assert.equal(answer.status, status, name);
      assert.ok(answer.body.message!.includes(message), `${name}: ${answer.body.message}`);
      assert.equal(answer.body.status, String(status), name);
    }
  });

  it('answers installations as GitHub does: wrong id and uninstalled 404, suspended 403, permissions 422', async () => {
    assert.deepEqual((await post(jwt(claims()), { id: '1' })).body.message, 'Not Found');
    const otherApp = github.createApp();
    const foreign = github.install(otherApp.appId);
    assert.equal((await post(jwt(claims()), { id: foreign })).status, 404, "another App's installation");
    const suspended = github.install(app.appId);
    github.suspend(suspended);
    const answer = await post(jwt(claims()), { id: suspended });
    assert.equal(answer.status, 403);
    assert.equal(answer.body.message, 'This installation has been suspended');
    const removed = github.install(app.appId);
    github.uninstall(removed);
    assert.equal((await post(jwt(claims()), { id: removed })).status, 404);
    const write = await post(jwt(claims()), { body: JSON.stringify({ permissions: { contents: 'write' } }) });
    assert.equal(write.status, 422);
  });

  it('requires a User-Agent and a supported API version', async () => {
    assert.equal((await post(jwt(claims()), { headers: { 'user-agent': '' } })).status, 403);
    assert.equal(
      (await post(jwt(claims()), { headers: { 'x-github-api-version': '2019-01-01' } })).status,
      400,
    );
  });

  it('serves git only for a live token it minted, and records every use of an expired one', async () => {
    const dir = await tempDir('gitmirror-standin-clone-');
    const url = (token: string) =>
      github.gitUrl('org/private.git').replace('http://', `http://x-access-token:${token}@`);
    try {
      const token = github.issueToken(installation);
      await git(['clone', '--quiet', '--bare', url(token), join(dir, 'ok.git')]);
      assert.deepEqual(github.expiredTokenUses(), []);
      await assert.rejects(
        git(['ls-remote', url('ghs_madeup0000000000000000000000000000')]),
        /401|Authentication failed/,
      );
      await assert.rejects(
        git(['ls-remote', github.gitUrl('org/private.git')]),
        /could not read Username|401/,
      );
      await new Promise((r) => setTimeout(r, 2100));
      await assert.rejects(git(['ls-remote', url(token)]), /Authentication failed|401/);
      const expired = github.expiredTokenUses();
      assert.equal(expired.length, 1);
      assert.ok(expired[0]!.remainingMs! <= 0);
      const revoked = github.install(app.appId);
      const revokedToken = github.issueToken(revoked);
      github.uninstall(revoked);
      await assert.rejects(git(['ls-remote', url(revokedToken)]), /Authentication failed|401/);
      assert.equal(github.gitRequests.at(-1)!.auth, 'revoked');
      assert.ok(!JSON.stringify(github.gitRequests).includes(token), 'records hold no token');
    } finally {
      await removeDir(dir);
    }
  });
});
