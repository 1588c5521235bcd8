import assert from 'node:assert/strict';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorStatus } from '../../../core/admin-api.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { waitFor } from '../../../testing/wait.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

describe('faults around a ready mirror', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let work: string;
  let id: string;
  const store = () => join(root, 'store');
  const clock = new TestClock();

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'svc', 6));
    upstream = await startGitUpstream(join(root, 'upstream'));
    // The store is a file, not a dir, until the test "repairs" it: every write fails.
    await writeFile(store(), 'not a directory');
    sidecar = await startTestSidecar(
      {
        GITMIRROR_DATA_DIR: join(root, 'data'),
        GITMIRROR_MIRRORS: upstream.url('org/svc.git'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_REF_CHECK_INTERVAL: '1s',
        GITMIRROR_SNAPSHOT_STORE: `file://${store()}`,
        GITMIRROR_SNAPSHOT_INTERVAL: '1h',
        GITMIRROR_SNAPSHOT_RETRY_BASE: '1s',
      },
      { clock },
    );
    await waitFor('ready', () => sidecar.isReady());
    id = `${upstream.host}/org/svc`;
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  it('retries a failed periodic snapshot with backoff and publishes once the store is back', async () => {
    const mirror = sidecar.mirrors.get(id)!;
    await waitFor('a failed attempt', () => mirror.snapshot.lastResult === 'failed', { timeoutMs: 20_000 });
    assert.match(mirror.snapshot.lastError ?? '', /SNAPSHOT_STORE_FAILED|ENOTDIR|not a directory/i);
    await rm(store());
    await waitFor('published after retry', () => mirror.snapshot.lastResult === 'published', {
      timeoutMs: 20_000,
    });
    assert.ok((await readdir(join(store(), upstream.host, 'org', 'svc'))).includes('latest.json'));
  });

  it('keeps serving while upstream answers 503, shows the staleness, and recovers by itself', async () => {
    const url = `${sidecar.gitUrl}/git/${id}.git`;
    const mirror = sidecar.mirrors.get(id)!;
    const before = await refsOf(mirror.dir, 'refs/heads/');
    upstream.failWith(503);
    await assert.rejects(sidecar.mirrors.fetch(mirror));
    clock.advance(1_000); // a second of outage, and a ref check due on the next clone
    const clone = join(root, 'during-outage');
    await git(['clone', '--quiet', '--bare', url, clone]);
    assert.equal(await refsOf(clone, 'refs/heads/'), before, 'clients get what the mirror has');
    const admin = (await (await fetch(`${sidecar.adminUrl}/v1/mirrors/${id}`)).json()) as MirrorStatus;
    assert.match(admin.lastFetchError ?? '', /503|FETCH|PROCESS_FAILED/);
    assert.ok((admin.stalenessSeconds ?? -1) >= 1);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(`gitmirror_mirror_staleness_seconds\\{mirror="${id.replace(/[.]/g, '\\.')}"\\} [1-9]`),
    );

    upstream.failWith(undefined);
    const commit = await addCommit(work, 'after-outage.txt', 'back\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    await sidecar.mirrors.fetch(mirror);
    assert.equal(mirror.status().lastFetchError, undefined);
    assert.equal((await git(['ls-remote', url, 'refs/heads/main'])).split('\t')[0], commit);
  });

  it('never publishes a snapshot after a failed fetch', async () => {
    const mirror = sidecar.mirrors.get(id)!;
    upstream.failWith(500);
    try {
      await assert.rejects(sidecar.mirrors.snapshot(mirror), (err) => isGitMirrorError(err, 'FETCH_FAILED'));
      assert.equal(mirror.snapshot.lastResult, 'failed');
    } finally {
      upstream.failWith(undefined);
    }
  });
});
