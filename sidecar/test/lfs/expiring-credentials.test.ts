import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TestClock } from '../../../testing/test-clock.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { HeldCredentials } from '../../src/git/credentials.ts';
import { UpstreamLfs } from '../../src/lfs/upstream-lfs.ts';

/**
 * The cache's own LFS batch requests (prefetch, downloads no client asked upstream for) carry
 * the mirror's credentials: a GitHub App token that would expire before the request is done is
 * never sent, as for git commands.
 */
describe("the cache's LFS requests with expiring credentials", () => {
  let server: Server;
  let host: string;
  const seen: (string | undefined)[] = [];
  const clock = new TestClock();
  const object = { oid: 'a'.repeat(64), size: 1 };

  before(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/vnd.git-lfs+json' });
      res.end(
        JSON.stringify({ objects: [{ ...object, error: { code: 404, message: 'Object does not exist' } }] }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const token = (lifetimeMs: number) =>
    new HeldCredentials(
      { username: 'x-access-token', password: 'ghs_testtoken' },
      { expiresAt: clock.now() + lifetimeMs, clock, requestBoundMs: 10 * 60_000 },
    );
  const ask = (credentials: HeldCredentials) =>
    new UpstreamLfs({ httpHosts: new Set([host]) }).downloadActions({
      lfsUrl: `http://${host}/org/repo.git/info/lfs`,
      objects: [object],
      credentials,
    });

  it('sends nothing on a token that would expire before the request is done', async () => {
    await assert.rejects(ask(token(30_000)), (err: unknown) =>
      isGitMirrorError(err, 'CREDENTIALS_UNAVAILABLE'),
    );
    assert.deepEqual(seen, []);
  });

  it('sends a token that outlasts the request', async () => {
    const answers = await ask(token(5 * 60_000));
    assert.equal(answers.get(object.oid)?.error?.code, 404);
    assert.deepEqual(seen, [`Basic ${Buffer.from('x-access-token:ghs_testtoken').toString('base64')}`]);
  });
});
