import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import express from 'express';
import { silentLogger } from '../../../core/log.ts';
import { GIT_ENV } from '../../../testing/git.ts';
import type { ClientKeyMode } from '../../src/config/sidecar-config.ts';
import { ClientLimiter } from '../../src/http/client-limiter.ts';
import { errorHandler } from '../../src/server/error-handler.ts';

const exec = promisify(execFile);

/** A git listener stand-in whose requests stay open until the test lets them go. */
async function startServer(keyBy: ClientKeyMode) {
  const limiter = new ClientLimiter({ maxConcurrent: 3, keyBy, retryAfterSeconds: 5 });
  const held: (() => void)[] = [];
  const app = express();
  app.use(limiter.middleware());
  app.get('/hold', (_req, res) => {
    held.push(() => res.end('done'));
  });
  app.use(errorHandler(silentLogger()));
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { limiter, held, server, url };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(condition());
}

describe('per-client fairness on the git listener', () => {
  let s: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    s = await startServer('credentials');
  });
  after(() => {
    s.server.closeAllConnections();
    s.server.close();
  });

  it('answers the request over the limit at once with 429 and Retry-After, and admits again once one ends', async () => {
    const token = { authorization: 'Basic dG9rZW46eA==' };
    const inFlight = [1, 2, 3].map(() => fetch(`${s.url}/hold`, { headers: token }));
    await until(() => s.held.length === 3);

    const started = Date.now();
    const refused = await fetch(`${s.url}/hold`, { headers: token });
    assert.ok(Date.now() - started < 1000, 'refused at once, not queued');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.deepEqual(await refused.json(), {
      error: {
        code: 'TOO_MANY_REQUESTS',
        message: 'more than 3 requests at once from this client; retry in 5 s',
      },
    });

    // Other credentials are another client.
    const other = fetch(`${s.url}/hold`, { headers: { authorization: 'Bearer other' } });
    await until(() => s.held.length === 4);

    s.held.shift()!();
    assert.equal(await (await inFlight[0]!).text(), 'done');
    const again = fetch(`${s.url}/hold`, { headers: token });
    await until(() => s.held.length === 4);
    for (const release of s.held.splice(0)) release();
    await Promise.all([...inFlight, other, again]);
    await until(() => s.limiter.status().clients === 0);
    assert.equal(s.limiter.status().refused, 1);
  });

  it('frees the slot of a client that hung up', async () => {
    const aborts = [1, 2, 3].map(() => new AbortController());
    const requests = aborts.map((a) => fetch(`${s.url}/hold`, { signal: a.signal }).catch(() => undefined));
    await until(() => s.held.length === 3);
    for (const a of aborts) a.abort();
    await Promise.all(requests);
    await until(() => s.limiter.status().clients === 0);
    s.held.splice(0);
  });

  it('is a clear error for git, not a hang', async () => {
    const holding = [1, 2, 3].map(() => fetch(`${s.url}/hold`));
    await until(() => s.held.length === 3);
    const git = await exec('git', ['ls-remote', `${s.url}/git/example.com/org/repo`], { env: GIT_ENV }).catch(
      (err: { stderr: string }) => err,
    );
    assert.match((git as { stderr: string }).stderr, /The requested URL returned error: 429/);
    for (const release of s.held.splice(0)) release();
    await Promise.all(holding);
  });
});

describe('who counts as one client', () => {
  it('is the address by default, whatever credentials it sends, and never keeps the secret', () => {
    const byAddress = new ClientLimiter({ maxConcurrent: 1, keyBy: 'address', retryAfterSeconds: 1 });
    const byCredentials = new ClientLimiter({ maxConcurrent: 1, keyBy: 'credentials', retryAfterSeconds: 1 });
    const req = (authorization?: string) => ({
      headers: authorization ? { authorization } : {},
      socket: { remoteAddress: '10.0.0.7' },
    });
    assert.equal(byAddress.keyOf(req('Bearer a') as never), 'address:10.0.0.7');
    assert.equal(byCredentials.keyOf(req() as never), 'address:10.0.0.7');
    const a = byCredentials.keyOf(req('Bearer secret-a') as never);
    assert.notEqual(a, byCredentials.keyOf(req('Bearer secret-b') as never));
    assert.equal(a, byCredentials.keyOf(req('Bearer secret-a') as never));
    assert.ok(!a.includes('secret') && !a.includes(Buffer.from('Bearer secret-a').toString('base64')));
  });

  it('has no limit with 0', () => {
    const off = new ClientLimiter({ maxConcurrent: 0, keyBy: 'address', retryAfterSeconds: 1 });
    for (let i = 0; i < 1000; i++) assert.ok(off.tryEnter('address:x'));
  });
});
