import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorSpec, MirrorStatus } from '../../../core/admin-api.ts';
import { rfc3339 } from '../../../core/clock.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

/**
 * Tokens that expire, as the operator hands them over for GitHub Apps (`credentials.expiresAt`):
 * no git command starts on a token that would expire while the command may still be sending
 * requests, so upstream never sees an expired token; new credentials cure it at once; and a PUT
 * that only brings new credentials leaves the periodic fetch where it was.
 */
describe('expiring upstream credentials', () => {
  const PASSWORD = 'rotating-token';
  let root: string;
  let work: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let id: string;
  const clock = new TestClock();
  const minutes = (n: number) => rfc3339(clock.now() + n * 60_000);
  const spec = (expiresAt: string, fetchIntervalSeconds = 3600): MirrorSpec => ({
    url: upstream.url('org/app.git'),
    fetchIntervalSeconds,
    credentials: { password: PASSWORD, expiresAt },
  });
  const admin = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${sidecar.adminUrl}/v1/mirrors/${id}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as MirrorStatus & { error?: { code: string } } };
  };

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'app', 3));
    upstream = await startGitUpstream(join(root, 'upstream'), {
      basicAuth: { user: 'x-access-token', password: PASSWORD },
    });
    sidecar = await startTestSidecar(
      {
        GITMIRROR_DATA_DIR: join(root, 'data'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_FETCH_TIMEOUT: '2m',
      },
      { clock, snapshots: async () => undefined },
    );
    id = `${upstream.host}/org/app`;
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  it('clones with a token that lasts, sending it as x-access-token', async () => {
    assert.equal((await admin('PUT', '', spec(minutes(60)))).status, 201);
    const restored = await admin('POST', '/restore?wait=true', {});
    assert.equal(restored.body.ready, true, JSON.stringify(restored.body.restore));
    assert.ok(upstream.requests.some((r) => r.authorized && r.command === 'fetch'));
  });

  it('starts no fetch on a token that expires before the fetch could finish its requests, and says why', async () => {
    // GITMIRROR_FETCH_TIMEOUT is 2 min: with 90 s left the token would not outlast a slow fetch.
    assert.equal((await admin('PUT', '', spec(minutes(1.5)))).status, 200);
    const before = upstream.requests.length;
    const refused = await admin('POST', '/fetch?wait=true');
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error?.code, 'CREDENTIALS_UNAVAILABLE');
    assert.equal(upstream.requests.length, before, 'nothing reached upstream');
    const status = (await admin('GET', '')).body;
    assert.match(
      status.lastFetchError ?? '',
      /CREDENTIALS_UNAVAILABLE: the upstream token expires in \d\ds, before a command that may send requests for 130s/,
    );
    assert.equal(status.ready, true, 'the mirror goes on serving what it has');

    clock.advance(5 * 60_000);
    const expired = await admin('POST', '/fetch?wait=true');
    assert.equal(expired.body.error?.code, 'CREDENTIALS_UNAVAILABLE');
    assert.match((await admin('GET', '')).body.lastFetchError ?? '', /expired 2\d\ds ago/);
    assert.equal(upstream.requests.length, before, 'an expired token is never sent');
  });

  it('fetches again as soon as new credentials arrive', async () => {
    const head = await addCommit(work, 'new.txt', 'after the rotation\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    assert.equal((await admin('PUT', '', spec(minutes(60)))).status, 200);
    const fetched = await admin('POST', '/fetch?wait=true');
    assert.equal(fetched.status, 200, JSON.stringify(fetched.body));
    assert.equal(fetched.body.head, head);
    assert.equal(fetched.body.lastFetchError, undefined);
  });

  it('keeps the periodic fetch on schedule while new credentials arrive more often than it runs', async () => {
    // A 10 s fetch interval (±10%) and a new token every second: were the timers armed again on
    // each PUT, the periodic fetch would never come round.
    assert.equal((await admin('PUT', '', spec(minutes(60), 10))).status, 200);
    // Nothing else talks to upstream here: no client asks for refs.
    const before = upstream.requests.length;
    const started = performance.now();
    for (let i = 1; performance.now() - started < 12_500; i++) {
      assert.equal((await admin('PUT', '', spec(minutes(60 + i), 10))).status, 200);
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.ok(upstream.requests.length > before, 'no periodic fetch in 12.5 s with a 10 s interval');
  });
});
