import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { MirrorStatus } from '../../../core/admin-api.ts';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { commitLfsFiles, lfsEnvironment } from '../../../testing/lfs-client.ts';
import { type LfsUpstream, startLfsUpstream } from '../../../testing/lfs-upstream.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';
import { randomContent } from './support.ts';

const exec = promisify(execFile);

describe('a sidecar serves git and Git LFS of a mirror at one URL', () => {
  let root: string;
  let upstream: LfsUpstream;
  let sidecar: RunningSidecar;
  let env: NodeJS.ProcessEnv;
  let files: Record<string, Buffer>;

  before(async () => {
    root = await tempDir('gitmirror-sidecar-lfs-');
    upstream = await startLfsUpstream(join(root, 'upstream'), {
      credentials: { user: 'user', password: 'pass' },
    });
    env = await lfsEnvironment(join(root, 'home'));
    await writeFile(join(root, 'home', 'credentials'), `http://user:pass@${upstream.host}\n`);
    const { work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 2);
    files = { 'a.bin': randomContent(200_000), 'b/c.bin': randomContent(1_000) };
    await commitLfsFiles(work, files, env);
    await git(['push', '--quiet', upstream.url('org/repo.git'), 'main'], { cwd: work, env });
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
    });
    await waitFor('mirror ready', () => sidecar.isReady());
    const cache = sidecar.gitUrl.slice('http://'.length);
    await writeFile(
      join(root, 'home', 'credentials'),
      `http://user:pass@${upstream.host}\nhttp://user:pass@${cache}\n`,
    );
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  it('a plain clone through the cache checks out the LFS files, fetched from upstream once', async () => {
    const dir = join(root, 'clone-1');
    await exec('git', ['clone', '--quiet', `${sidecar.gitUrl}/git/${upstream.host}/org/repo.git`, dir], {
      env: { ...GIT_ENV, ...env },
    });
    for (const [name, content] of Object.entries(files))
      assert.ok((await readFile(join(dir, name))).equals(content));
    const dir2 = join(root, 'clone-2');
    await exec('git', ['clone', '--quiet', `${sidecar.gitUrl}/git/${upstream.host}/org/repo.git`, dir2], {
      env: { ...GIT_ENV, ...env },
    });
    for (const [name, content] of Object.entries(files))
      assert.ok((await readFile(join(dir2, name))).equals(content));
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(metrics, /gitmirror_lfs_objects_served_total\{source="local"\} 2/);
    assert.match(metrics, /gitmirror_lfs_objects_served_total\{source="upstream"\} 2/);
  });

  it('LFS paths are checked like git paths', async () => {
    const bad = await fetch(
      `${sidecar.gitUrl}/git/${upstream.host}/org/%2e%2e/repo.git/info/lfs/objects/batch`,
      {
        method: 'POST',
      },
    );
    assert.equal(bad.status, 400);
    const foreign = await fetch(`${sidecar.gitUrl}/git/evil.example/org/repo.git/info/lfs/objects/batch`, {
      method: 'POST',
    });
    assert.equal(foreign.status, 403);
    const unknown = await fetch(`${sidecar.gitUrl}/git/${upstream.host}/org/repo.git/info/lfs/whatever`);
    assert.equal(unknown.status, 404);
  });

  it("the snapshot writer prefetches HEAD's objects after each fetch; another replica then serves them from the store", async () => {
    const store = join(root, 'store');
    await writeFile(join(root, 'cache-credentials'), `http://user:pass@${upstream.host}\n`);
    const writer = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'writer'),
      GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${store}`,
      GITMIRROR_SNAPSHOT_INTERVAL: '1h',
      GITMIRROR_LFS_PREFETCH: 'Head',
      GITMIRROR_CREDENTIALS_FILE: join(root, 'cache-credentials'),
    });
    try {
      const id = `${upstream.host}/org/repo`;
      const status = async () =>
        (await (await fetch(`${writer.adminUrl}/v1/mirrors/${id}`)).json()) as MirrorStatus;
      await waitFor('first prefetch', async () => (await status()).lfs?.lastPrefetch !== undefined);
      assert.deepEqual(pick((await status()).lfs!.lastPrefetch!), {
        objects: 2,
        held: 0,
        fetched: 2,
        failed: 0,
      });

      // A push with new LFS content: the next fetch brings its objects into the store.
      const work = join(root, 'pusher');
      await git(['clone', '--quiet', upstream.url('org/repo.git'), work], {
        env: { ...env, GIT_LFS_SKIP_SMUDGE: '1' },
      });
      const added = await commitLfsFiles(work, { 'new.bin': randomContent(70_000) }, env, 'new LFS content');
      await git(['push', '--quiet', 'origin', 'main'], { cwd: work, env });
      const before = (await status()).lfs!.lastPrefetch!.finishedAt;
      await fetch(`${writer.adminUrl}/v1/mirrors/${id}/fetch?wait=true`, { method: 'POST' });
      await waitFor(
        'prefetch after the fetch',
        async () => (await status()).lfs!.lastPrefetch!.finishedAt !== before,
      );
      assert.deepEqual(pick((await status()).lfs!.lastPrefetch!), {
        objects: 3,
        held: 2,
        fetched: 1,
        failed: 0,
      });
      const oid = added['new.bin']!.oid;
      assert.ok((await readFile(join(store, 'lfs', oid.slice(0, 2), oid))).length === 70_000);
      assert.equal(upstream.downloads(oid), 1);

      // A replica with an empty data dir and the same store: the client never reaches upstream's storage.
      const reader = await startTestSidecar({
        GITMIRROR_DATA_DIR: join(root, 'reader'),
        GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_SNAPSHOT_STORE: `file://${store}`,
      });
      try {
        await waitFor('reader ready', () => reader.isReady());
        const batches = upstream.batches.length;
        const dir = join(root, 'reader-clone');
        await exec('git', ['clone', '--quiet', `${reader.gitUrl}/git/${upstream.host}/org/repo.git`, dir], {
          env: { ...GIT_ENV, ...env },
        });
        assert.equal((await readFile(join(dir, 'new.bin'))).length, 70_000);
        assert.equal(upstream.downloads(oid), 1);
        assert.equal(upstream.batches.length, batches, 'not even a batch request reached upstream');
      } finally {
        await reader.shutdown();
      }
    } finally {
      await writer.shutdown();
    }
  });

  it("LFS requests wait out the host's backoff after a 429 with Retry-After, as git's do, and go out again after it", async () => {
    const object = upstream.add('org/repo', randomContent(5_000));
    const batch = () =>
      fetch(`${sidecar.gitUrl}/git/${upstream.host}/org/repo.git/info/lfs/objects/batch`, {
        method: 'POST',
        headers: {
          accept: 'application/vnd.git-lfs+json',
          'content-type': 'application/vnd.git-lfs+json',
          authorization: `Basic ${Buffer.from('user:pass').toString('base64')}`,
        },
        body: JSON.stringify({ operation: 'download', transfers: ['basic'], objects: [object] }),
      });
    upstream.git.failWith(429, { 'Retry-After': '5' });
    const throttled = await batch();
    await throttled.arrayBuffer();
    const throttledAt = Date.now();
    upstream.git.failWith(undefined);
    assert.equal(throttled.status, 429, "upstream's answer is relayed");
    const reached = upstream.git.requests.length;
    const batches = upstream.batches.length;

    // Within the 5 s the cache does not ask: the client is told to come back when the wait is over.
    const during = await batch();
    assert.equal(during.status, 503);
    const retryAfter = Number(during.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 5, `Retry-After ${retryAfter}`);
    assert.match(await during.text(), /UPSTREAM_THROTTLED/);
    assert.equal(upstream.batches.length, batches, 'no batch request reached upstream during the wait');
    assert.equal(upstream.git.requests.length, reached);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(`gitmirror_upstream_throttled_total\\{host="${upstream.host}",status="429"\\} 1`),
    );

    await new Promise((r) => setTimeout(r, Math.max(0, throttledAt + 5_200 - Date.now())));
    const after = (await (await batch()).json()) as { objects: { oid: string; actions?: unknown }[] };
    assert.ok(after.objects[0]?.actions, 'after the wait upstream is asked, and offers the object');
    assert.equal(upstream.batches.length, batches + 1);
  });
});

function pick(run: { objects: number; held: number; fetched: number; failed: number }) {
  const { objects, held, fetched, failed } = run;
  return { objects, held, fetched, failed };
}
