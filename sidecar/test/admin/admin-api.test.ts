import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorList, MirrorStatus } from '../../../core/admin-api.ts';
import { mirrorSpecDigest } from '../../../core/spec-digest.ts';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

const TOKEN = 'admin-token-for-tests';

describe('admin API', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let id: string;
  const clock = new TestClock();
  const call = (method: string, path: string, body?: unknown, token: string | null = TOKEN) =>
    fetch(`${sidecar.adminUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });

  before(async () => {
    root = await tempDir();
    await createUpstreamRepo(join(root, 'upstream', 'org'), 'app', 4);
    upstream = await startGitUpstream(join(root, 'upstream'));
    await writeFile(join(root, 'token'), `${TOKEN}\n`);
    sidecar = await startTestSidecar(
      {
        GITMIRROR_DATA_DIR: join(root, 'data'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_ALLOWED_HOSTS: 'github.com',
        GITMIRROR_ADMIN_TOKEN_FILE: join(root, 'token'),
      },
      { clock },
    );
    id = `${upstream.host}/org/app`;
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  it('refuses a missing or wrong bearer token with 401 and does nothing', async () => {
    for (const token of [null, 'wrong', `${TOKEN}x`, TOKEN.slice(0, -1)]) {
      const res = await call('PUT', `/v1/mirrors/${id}`, { url: upstream.url('org/app.git') }, token);
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    }
    assert.equal(sidecar.mirrors.list().length, 0);
    assert.equal((await fetch(`${sidecar.adminUrl}/metrics`)).status, 200, 'metrics need no token');
  });

  it('PUT creates a mirror (201) that is empty until restored, then updates it (200)', async () => {
    const created = await call('PUT', `/v1/mirrors/${id}`, {
      url: upstream.url('org/app.git'),
      fetchIntervalSeconds: 60,
    });
    assert.equal(created.status, 201);
    const status = (await created.json()) as MirrorStatus;
    assert.equal(status.state, 'empty');
    assert.equal(status.ready, false);
    const updated = await call('PUT', `/v1/mirrors/${id}`, {
      url: upstream.url('org/app.git'),
      snapshot: { writer: true, intervalSeconds: 3600, retain: 3 },
    });
    assert.equal(updated.status, 200);
    assert.equal(((await updated.json()) as MirrorStatus).snapshot.writer, true);
  });

  it('rejects bad bodies with 400 and a reason', async () => {
    const cases: [unknown, RegExp][] = [
      [{ url: 'https://github.com/someone/else.git' }, /names github.com\/someone\/else/],
      [{ url: upstream.url('org/app.git'), fetchIntervalSeconds: -1 }, /fetchIntervalSeconds/],
      [{ url: upstream.url('org/app.git'), surprise: true }, /unknown field/],
      [{ url: `http://u:p@${upstream.host}/org/app.git` }, /credentials/],
      [{ url: upstream.url('org/app.git'), access: 'Everyone' }, /access/],
      ['{not json', /not valid JSON/],
    ];
    for (const [body, reason] of cases) {
      const res = await call('PUT', `/v1/mirrors/${id}`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(((await res.json()) as { error: { message: string } }).error.message, reason);
    }
    assert.equal(
      (await call('PUT', '/v1/mirrors/github.com/../etc', { url: 'https://github.com/etc' })).status,
      400,
    );
    assert.equal((await call('POST', `/v1/mirrors/${id}/explode`)).status, 404);
    assert.equal((await call('GET', '/v1/mirrors/github.com/nobody/here')).status, 404);
  });

  it('POST restore is asynchronous and idempotent; progress shows in GET', async () => {
    const first = await call('POST', `/v1/mirrors/${id}/restore`, {});
    assert.equal(first.status, 202);
    const second = await call('POST', `/v1/mirrors/${id}/restore`, {});
    assert.ok([200, 202].includes(second.status));
    await sidecar.mirrors.warm(sidecar.mirrors.get(id)!); // joins the warm-up under way
    const list = (await (await call('GET', '/v1/mirrors')).json()) as MirrorList;
    const status = list.mirrors.find((m) => m.id === id)!;
    assert.equal(status.ready, true);
    assert.equal(status.restore.phase, 'done');
    assert.equal(status.restore.source, 'clone', 'no snapshot store content yet, so it cloned');
    assert.equal(status.restore.error, 'no snapshot published yet');
    assert.match(status.head ?? '', /^[0-9a-f]{40}$/);
    assert.equal(
      (await call('POST', `/v1/mirrors/${id}/restore`, {})).status,
      200,
      'a ready mirror is left alone',
    );
  });

  it('POST fetch?wait=true fetches now; POST snapshot?wait=true publishes', async () => {
    const fetched = await call('POST', `/v1/mirrors/${id}/fetch?wait=true`);
    assert.equal(fetched.status, 200);
    assert.ok(((await fetched.json()) as MirrorStatus).lastFetchTime);
    const published = await call('POST', `/v1/mirrors/${id}/snapshot?wait=true`);
    assert.equal(published.status, 200);
    const body = (await published.json()) as { result: string; manifest: { key: string } };
    assert.equal(body.result, 'published');
    const again = (await (await call('POST', `/v1/mirrors/${id}/snapshot?wait=true`)).json()) as {
      result: string;
    };
    assert.equal(again.result, 'unchanged', 'unchanged refs are not published twice');
  });

  it('reports the digest of the spec it runs, and drops the writer role on demand', async () => {
    const spec = { url: upstream.url('org/app.git'), fetchIntervalSeconds: 120, snapshot: { writer: false } };
    const status = (await (await call('PUT', `/v1/mirrors/${id}`, spec)).json()) as MirrorStatus;
    assert.equal(
      status.specDigest,
      mirrorSpecDigest({ snapshot: { writer: false }, fetchIntervalSeconds: 120, url: spec.url }),
    );
    assert.equal(status.fetchIntervalSeconds, 120);
    assert.equal(status.snapshot.writer, false);
  });

  it('accepts a rotated token once the file changes (re-read every 5 s)', async () => {
    await writeFile(join(root, 'token'), 'rotated-token\n');
    clock.advance(5_001);
    assert.equal((await call('GET', '/v1/mirrors', undefined, 'rotated-token')).status, 200);
    assert.equal((await call('GET', '/v1/mirrors')).status, 401, 'the old token no longer works');
    await writeFile(join(root, 'token'), `${TOKEN}\n`);
    clock.advance(5_001);
    assert.equal((await call('GET', '/v1/mirrors')).status, 200);
  });

  it('DELETE removes the mirror from memory and disk', async () => {
    const dir = sidecar.mirrors.get(id)!.dir;
    assert.equal((await call('DELETE', `/v1/mirrors/${id}`)).status, 204);
    assert.equal((await call('GET', `/v1/mirrors/${id}`)).status, 404);
    await assert.rejects(git(['rev-parse', 'HEAD'], { cwd: dir }));
    assert.equal((await call('DELETE', `/v1/mirrors/${id}`)).status, 404);
  });
});
