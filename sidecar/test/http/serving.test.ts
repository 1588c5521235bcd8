import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo, objectsOf, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { waitFor } from '../../../testing/wait.ts';
import { pktLine } from '../../src/http/pkt-line.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

describe('serving clones and fetches from a local mirror', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let work: string;
  let bare: string;
  let cacheUrl: string;
  const clock = new TestClock();

  before(async () => {
    root = await tempDir();
    ({ bare, work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 12));
    upstream = await startGitUpstream(join(root, 'upstream'));
    sidecar = await startTestSidecar(
      {
        GITMIRROR_DATA_DIR: join(root, 'data'),
        GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_REF_CHECK_INTERVAL: '1s',
      },
      { clock },
    );
    await waitFor('mirror ready', () => sidecar.isReady());
    cacheUrl = `${sidecar.gitUrl}/git/${upstream.host}/org/repo.git`;
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  const cloneVariants: [string, string[]][] = [
    ['protocol v0', ['-c', 'protocol.version=0', 'clone', '--bare']],
    ['protocol v2', ['-c', 'protocol.version=2', 'clone', '--bare']],
    ['--mirror', ['clone', '--mirror']],
  ];
  for (const [name, args] of cloneVariants) {
    it(`clones with ${name}: refs and objects equal upstream, fsck clean`, async () => {
      const target = join(root, `clone-${name.replace(/\W+/g, '-')}`);
      const before = upstream.requests.length;
      await git([...args, cacheUrl, target]);
      await git(['fsck', '--strict'], { cwd: target });
      assert.equal(await refsOf(target, 'refs/heads/'), await refsOf(bare, 'refs/heads/'));
      assert.equal(await refsOf(target, 'refs/tags/'), await refsOf(bare, 'refs/tags/'));
      assert.deepEqual(await objectsOf(target), await objectsOf(bare));
      const packsFromUpstream = upstream.requests.slice(before).filter((r) => r.command === 'fetch').length;
      assert.equal(packsFromUpstream, 0, 'a ready mirror serves the pack itself');
    });
  }

  it('serves a partial clone (--filter=blob:none) that can check out', async () => {
    const target = join(root, 'partial');
    await git(['clone', '--filter=blob:none', cacheUrl, target]);
    const promisor = await git(['config', 'remote.origin.promisor'], { cwd: target });
    assert.equal(promisor.trim(), 'true');
    assert.equal(
      (await git(['rev-parse', 'HEAD'], { cwd: target })).trim(),
      (await git(['rev-parse', 'main'], { cwd: bare })).trim(),
    );
    await git(['fsck'], { cwd: target });
  });

  it('serves a tree:0 filter clone', async () => {
    const target = join(root, 'treeless');
    await git(['clone', '--bare', '--filter=tree:0', cacheUrl, target]);
    const objects = await objectsOf(target);
    assert.ok(objects.length < (await objectsOf(bare)).length, 'trees and blobs were filtered out');
  });

  it('serves shallow clones (--depth 1, --shallow-since)', async () => {
    const depth1 = join(root, 'shallow');
    await git(['clone', '--depth', '1', cacheUrl, depth1]);
    assert.equal((await git(['rev-list', '--count', 'HEAD'], { cwd: depth1 })).trim(), '1');
    const since = join(root, 'shallow-since');
    await git(['clone', '--bare', '--shallow-since=2000-01-01', cacheUrl, since]);
    assert.ok(Number((await git(['rev-list', '--count', 'main'], { cwd: since })).trim()) >= 1);
  });

  it('shows a new upstream commit within seconds, without waiting for the periodic fetch', async () => {
    const commit = await addCommit(work, 'fresh.txt', `fresh ${Date.now()}\n`);
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    clock.advance(1_000); // past the 1s ref-check interval
    const lsRemote = await git(['ls-remote', cacheUrl, 'refs/heads/main']);
    assert.equal(lsRemote.split('\t')[0], commit);
    const target = join(root, 'after-push');
    await git(['clone', '--bare', cacheUrl, target]);
    assert.equal((await git(['rev-parse', 'main'], { cwd: target })).trim(), commit);
  });

  it('fetches any commit by id, including one orphaned by a force-push', async () => {
    const orphan = await addCommit(work, 'orphan.txt', 'soon orphaned\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const mirror = sidecar.mirrors.get(`${upstream.host}/org/repo`)!;
    await sidecar.mirrors.fetch(mirror);
    await git(['reset', '--quiet', '--hard', 'HEAD~1'], { cwd: work });
    await git(['push', '--quiet', '--force', 'origin', 'main'], { cwd: work });
    await sidecar.mirrors.fetch(mirror);
    const target = join(root, 'by-id');
    await git(['init', '--quiet', '--bare', target]);
    await git(['-c', 'protocol.version=2', 'fetch', '--quiet', cacheUrl, orphan], { cwd: target });
    assert.equal((await git(['cat-file', '-t', orphan], { cwd: target })).trim(), 'commit');
  });

  it('fetches incrementally into an existing clone with protocol v0 and v2', async () => {
    for (const version of ['0', '2']) {
      const target = join(root, `incremental-v${version}`);
      await git(['clone', '--quiet', cacheUrl, target]);
      const commit = await addCommit(work, `inc-${version}.txt`, `v${version}\n`);
      await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
      clock.advance(1_000);
      await git(['-c', `protocol.version=${version}`, 'fetch', '--quiet', 'origin'], { cwd: target });
      assert.equal((await git(['rev-parse', 'origin/main'], { cwd: target })).trim(), commit);
    }
  });

  it('repacks a fresh clone with a multi-pack-index bitmap, so clones count objects fast', async () => {
    const mirror = sidecar.mirrors.get(`${upstream.host}/org/repo`)!;
    await waitFor('bitmap written', async () =>
      (await readdir(join(mirror.dir, 'objects', 'pack'))).some((f) =>
        /^multi-pack-index-.*\.bitmap$/.test(f),
      ),
    );
  });

  it('decodes gzip request bodies', async () => {
    const body = `${pktLine('command=ls-refs\n')}${pktLine('agent=test\n')}0001${pktLine('ref-prefix refs/heads/\n')}0000`;
    const res = await fetch(`${cacheUrl}/git-upload-pack`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-git-upload-pack-request',
        'content-encoding': 'gzip',
        'git-protocol': 'version=2',
      },
      body: gzipSync(body),
    });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /refs\/heads\/main/);
    const garbage = await fetch(`${cacheUrl}/git-upload-pack`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip' },
      body: 'not gzip at all',
    });
    assert.equal(garbage.status, 400);
  });

  it('exports request, job and mirror metrics', async () => {
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    for (const name of [
      'gitmirror_http_requests_total{route="upload-pack",outcome="local_200"}',
      'gitmirror_http_response_bytes_total{route="upload_pack",source="local"}',
      'gitmirror_upload_pack_duration_seconds_bucket',
      'gitmirror_git_operations_total{operation="restore",outcome="success"}',
      'gitmirror_mirrors{state="ready"} 1',
      'gitmirror_scheduler_queue_depth',
      'gitmirror_event_loop_delay_p99_seconds',
      'gitmirror_process_resident_memory_bytes',
    ]) {
      assert.ok(metrics.includes(name), `missing ${name}`);
    }
  });

  it('passes a push through to upstream', async () => {
    const clone = join(root, 'pusher');
    await git(['clone', '--quiet', cacheUrl, clone]);
    const commit = await addCommit(clone, 'pushed.txt', 'through the cache\n');
    await git(['push', '--quiet', 'origin', 'HEAD:refs/heads/pushed'], { cwd: clone });
    assert.equal((await git(['rev-parse', 'refs/heads/pushed'], { cwd: bare })).trim(), commit);
  });
});
