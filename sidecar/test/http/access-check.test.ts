import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../../core/log.ts';
import { parseRepoId } from '../../../core/repo-id.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { UpstreamAccessCheck } from '../../src/http/access-check.ts';
import { Mirror } from '../../src/mirrors/mirror.ts';
import { UpstreamHosts } from '../../src/upstream/host-gate.ts';

describe("the Private rule's access check against a throttling upstream", () => {
  let server: Server;
  let host: string;
  let asked = 0;

  before(async () => {
    server = createServer((_req, res) => {
      asked++;
      res.writeHead(429, { 'Retry-After': '7' }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const privateMirror = () =>
    new Mirror({
      repo: parseRepoId(`${host}/org/repo`),
      upstream: `http://${host}/org/repo`,
      dir: '/nowhere',
      settings: {
        fetchIntervalMs: 300_000,
        snapshot: { writer: false, retain: 3 },
        access: 'Private',
        lfs: { prefetch: 'None' },
        fleet: {},
      },
    });
  const throttled = (seconds: number) => (err: unknown) =>
    isGitMirrorError(err, 'UPSTREAM_THROTTLED') && err.retryAfterMs === seconds * 1000;

  it("without the hosts' gates, refuses with upstream's own wait (its Retry-After is kept)", async () => {
    const clock = new TestClock(Date.parse('2026-01-01T00:00:00Z'));
    const alone = new UpstreamAccessCheck(silentLogger(), clock);
    await assert.rejects(alone.check(privateMirror(), 'Basic eDp5'), throttled(7));
  });

  it("with the gates, the host is backed off: the next client's check waits it out without asking", async () => {
    const clock = new TestClock(Date.parse('2026-01-01T00:00:00Z'));
    const hosts = new UpstreamHosts({ transfers: 4, refChecksPerSecond: 2 }, { clock });
    const check = new UpstreamAccessCheck(silentLogger(), clock, hosts);
    const before = asked;
    await assert.rejects(check.check(privateMirror(), 'Basic eDp5'), throttled(7));
    assert.equal(asked, before + 1);
    clock.advance(2_000);
    await assert.rejects(check.check(privateMirror(), 'Basic b3RoZXI6Y2xpZW50'), throttled(5));
    assert.equal(asked, before + 1, 'nothing was sent during the backoff');
  });
});
