import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isOperatorError, type OperatorErrorCode } from '../../operator/src/errors/operator-error.ts';
import {
  HttpSidecarClient,
  type SidecarClient,
  type SidecarTarget,
} from '../../operator/src/sidecar/admin-client.ts';
import { FakeSidecars } from '../../operator/test/fakes/fake-sidecars.ts';
import type { RunningSidecar } from '../../sidecar/src/server/sidecar.ts';
import { createUpstreamRepo } from '../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../testing/git-upstream.ts';
import { startTestSidecar } from '../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../testing/temp-dir.ts';
import type { MirrorSpec, MirrorStatus } from '../admin-api.ts';
import type { WireErrorCode } from '../errors.ts';
import { mirrorSpecDigest } from '../spec-digest.ts';

/**
 * The admin API as the operator uses it (its `SidecarClient`), one specification run against
 * the operator's fake sidecars and against a real sidecar (admin router, auth and MirrorManager,
 * real git, a local upstream) through the operator's `HttpSidecarClient`. A behaviour the
 * reconciler tests rely on that the real sidecar does not have fails here, not in production.
 */
interface Subject {
  client: SidecarClient;
  target: SidecarTarget;
  /** The same sidecar with a token it does not accept. */
  wrongToken: SidecarTarget;
  /** A sidecar that does not answer at all. */
  unreachable(): Promise<SidecarTarget>;
  /** An id this sidecar can hold, and its upstream URL. */
  id: string;
  url: string;
}

const TOKEN = 'contract-admin-token';

async function rejectsWith(call: Promise<unknown>, code: OperatorErrorCode, remote?: WireErrorCode) {
  await assert.rejects(
    call,
    (err) => isOperatorError(err, code) && (remote === undefined || err.remoteCode === remote),
    `${code}${remote ? ` (${remote})` : ''}`,
  );
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function adminApiContract(name: string, open: () => Promise<{ subject: Subject; close(): Promise<void> }>) {
  describe(`the admin API as the operator uses it: ${name}`, () => {
    let s: Subject;
    let close: () => Promise<void>;
    before(async () => {
      ({ subject: s, close } = await open());
    });
    after(() => close());

    const spec = (extra: Partial<MirrorSpec> = {}): MirrorSpec => ({
      url: s.url,
      fetchIntervalSeconds: 60,
      snapshot: { writer: false, intervalSeconds: 3600, retain: 3 },
      ...extra,
    });

    test('a mirror it does not hold is undefined, and has nothing to restore', async () => {
      assert.equal(await s.client.getMirror(s.target, s.id), undefined);
      await rejectsWith(s.client.restore(s.target, s.id, {}), 'SIDECAR_NOT_FOUND', 'NOT_FOUND');
    });

    test('PUT creates an empty mirror that echoes the spec and its digest, never the credentials', async () => {
      const desired = spec({ credentials: { password: 'pa55word-not-echoed' } });
      const status = await s.client.putMirror(s.target, s.id, desired);
      assert.equal(status.id, s.id);
      assert.equal(status.url, s.url);
      assert.equal(status.state, 'empty');
      assert.equal(status.ready, false);
      assert.equal(status.access, 'Private', 'credentials and no access: Private');
      assert.equal(status.fetchIntervalSeconds, 60);
      assert.equal(status.specDigest, mirrorSpecDigest(desired));
      assert.deepEqual(
        { writer: status.snapshot.writer, intervalSeconds: status.snapshot.intervalSeconds, retain: 3 },
        { writer: false, intervalSeconds: 3600, retain: status.snapshot.retain },
      );
      assert.ok(!JSON.stringify(status).includes('pa55word'));
    });

    test('PUT again updates it in place: the writer role, the access, the digest', async () => {
      const desired = spec({
        snapshot: { writer: true, intervalSeconds: 7200, retain: 4 },
        access: 'Public',
      });
      const status = await s.client.putMirror(s.target, s.id, desired);
      assert.equal(status.snapshot.writer, true);
      assert.equal(status.snapshot.intervalSeconds, 7200);
      assert.equal(status.snapshot.retain, 4);
      assert.equal(status.access, 'Public');
      assert.equal(status.specDigest, mirrorSpecDigest(desired));
      const listed = await s.client.listMirrors(s.target);
      assert.deepEqual(
        listed.map((m) => [m.id, m.snapshot.writer]),
        [[s.id, true]],
      );
    });

    test('PUT refuses a URL that names another repository, or carries credentials', async () => {
      const other = s.url.replace(/\/app\.git$/, '/other.git');
      await rejectsWith(
        s.client.putMirror(s.target, s.id, spec({ url: other })),
        'SIDECAR_REJECTED',
        'BAD_REQUEST',
      );
      const withUser = s.url.replace('://', '://user:pw@');
      await rejectsWith(
        s.client.putMirror(s.target, s.id, spec({ url: withUser })),
        'SIDECAR_REJECTED',
        'BAD_REPO_PATH',
      );
    });

    test('a fetch of a mirror it does not hold is not found; of one not ready yet, accepted and ignored', async () => {
      const other = s.id.replace(/\/app$/, '/other');
      await rejectsWith(s.client.fetchMirror(s.target, other), 'SIDECAR_NOT_FOUND', 'NOT_FOUND');
      const accepted = await s.client.fetchMirror(s.target, s.id);
      assert.equal(accepted.id, s.id);
      assert.equal(accepted.ready, false);
      assert.equal((await s.client.getMirror(s.target, s.id))?.lastFetchTime, undefined);
    });

    test('a restore is accepted at once and the mirror turns ready with a HEAD', async () => {
      // The answer may still show the restore queued (state empty) behind other jobs.
      const accepted = await s.client.restore(s.target, s.id, {});
      assert.equal(accepted.id, s.id);
      let status: MirrorStatus | undefined;
      await until('the mirror to be ready', async () => {
        status = await s.client.getMirror(s.target, s.id);
        return status?.ready === true;
      });
      assert.equal(status?.state, 'ready');
      assert.ok(status?.head);
      assert.ok(status?.lastFetchTime);
    });

    test('a restore of a ready mirror changes nothing unless forced', async () => {
      const before = await s.client.getMirror(s.target, s.id);
      const again = await s.client.restore(s.target, s.id, {});
      assert.equal(again.ready, true);
      assert.equal(again.restore.startedAt, before?.restore.startedAt);
    });

    test('a fetch of a ready mirror is accepted at once and runs: lastFetchTime moves', async () => {
      const before = await s.client.getMirror(s.target, s.id);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const accepted = await s.client.fetchMirror(s.target, s.id);
      assert.equal(accepted.id, s.id);
      await until('the fetch to run', async () => {
        const status = await s.client.getMirror(s.target, s.id);
        return status?.lastFetchTime !== before?.lastFetchTime;
      });
      await rejectsWith(s.client.fetchMirror(s.wrongToken, s.id), 'SIDECAR_UNAUTHORIZED', 'UNAUTHORIZED');
    });

    test('a wrong token is refused and changes nothing', async () => {
      await rejectsWith(s.client.listMirrors(s.wrongToken), 'SIDECAR_UNAUTHORIZED', 'UNAUTHORIZED');
      await rejectsWith(s.client.deleteMirror(s.wrongToken, s.id), 'SIDECAR_UNAUTHORIZED', 'UNAUTHORIZED');
      assert.ok(await s.client.getMirror(s.target, s.id));
    });

    test('DELETE removes it, and deleting what is gone succeeds', async () => {
      await s.client.deleteMirror(s.target, s.id);
      assert.equal(await s.client.getMirror(s.target, s.id), undefined);
      assert.deepEqual(await s.client.listMirrors(s.target), []);
      await s.client.deleteMirror(s.target, s.id);
    });

    test('a sidecar that does not answer is unreachable', async () => {
      await rejectsWith(s.client.listMirrors(await s.unreachable()), 'SIDECAR_UNREACHABLE');
    });
  });
}

adminApiContract('fake sidecars (operator/test/fakes)', async () => {
  const client = new FakeSidecars();
  client.tokens.set('ns', TOKEN);
  client.of('ns/p1').readyAfterReads = 2;
  const target = { baseUrl: 'http://fake', token: TOKEN, pod: 'ns/p1' };
  const subject: Subject = {
    client,
    target,
    wrongToken: { ...target, token: 'wrong' },
    unreachable: async () => {
      client.of('ns/gone').down = true;
      return { ...target, pod: 'ns/gone' };
    },
    id: 'upstream.test/org/app',
    url: 'https://upstream.test/org/app.git',
  };
  return { subject, close: async () => {} };
});

adminApiContract('a real sidecar over HTTP', async () => {
  const root = await tempDir();
  await createUpstreamRepo(join(root, 'upstream', 'org'), 'app', 3);
  const upstream: GitUpstream = await startGitUpstream(join(root, 'upstream'));
  await writeFile(join(root, 'token'), `${TOKEN}\n`);
  const sidecar: RunningSidecar = await startTestSidecar({
    GITMIRROR_DATA_DIR: join(root, 'data'),
    GITMIRROR_HTTP_HOSTS: upstream.host,
    GITMIRROR_ALLOWED_HOSTS: upstream.host,
    GITMIRROR_ADMIN_TOKEN_FILE: join(root, 'token'),
  });
  const target = { baseUrl: sidecar.adminUrl, token: TOKEN, pod: 'ns/p1' };
  const subject: Subject = {
    client: new HttpSidecarClient({ timeoutMs: 5_000 }),
    target,
    wrongToken: { ...target, token: 'wrong' },
    unreachable: async () => ({ ...target, baseUrl: `http://127.0.0.1:${await closedPort()}` }),
    id: `${upstream.host}/org/app`,
    url: upstream.url('org/app.git'),
  };
  return {
    subject,
    close: async () => {
      await sidecar.shutdown();
      await upstream.close();
      await removeDir(root);
    },
  };
});

/** A loopback port that was free a moment ago and has no listener now. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
