import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorList, MirrorStatus } from '../../../core/admin-api.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, makeLargeRepo, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { type SidecarProcess, startSidecarProcess } from '../../../testing/sidecar-process.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';

/**
 * kill -9 at the worst moments: the next start must leave no temp dirs and hold either the
 * old mirror or the new one, never a mix (fsck clean), and the store must show either the
 * old snapshot or the new one.
 */
describe('kill -9 during long operations', () => {
  let root: string;
  let upstream: GitUpstream;
  let env: Record<string, string>;
  let id: string;
  const running: SidecarProcess[] = [];

  const start = async (dataDir: string) => {
    const sidecar = await startSidecarProcess({ ...env, GITMIRROR_DATA_DIR: join(root, dataDir) });
    running.push(sidecar);
    return sidecar;
  };
  const status = async (s: SidecarProcess): Promise<MirrorStatus | undefined> => {
    const list = (await (await fetch(`${s.adminUrl}/v1/mirrors`)).json()) as MirrorList;
    return list.mirrors.find((m) => m.id === id);
  };
  const ready = (s: SidecarProcess) => s.waitUntilOk('/readyz', { timeoutMs: 120_000 });
  const mirrorDir = (dataDir: string) => join(root, dataDir, 'mirrors', upstream.host, 'big', 'mono.git');
  const manifest = () => readFile(join(root, 'store', upstream.host, 'big', 'mono', 'latest.json'), 'utf8');

  before(async () => {
    root = await tempDir();
    await makeLargeRepo(join(root, 'upstream', 'big', 'mono.git'), 2500, 40);
    upstream = await startGitUpstream(join(root, 'upstream'));
    env = {
      GITMIRROR_MIRRORS: upstream.url('big/mono.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${join(root, 'store')}`,
    };
    id = `${upstream.host}/big/mono`;
    const writer = await start('writer');
    await ready(writer);
    const res = await fetch(`${writer.adminUrl}/v1/mirrors/${id}/snapshot?wait=true`, { method: 'POST' });
    assert.equal(res.status, 200);
  });

  after(async () => {
    for (const s of running) await s.stop('SIGKILL');
    await upstream.close();
    await removeDir(root);
  });

  async function assertRecovered(dataDir: string): Promise<SidecarProcess> {
    const next = await start(dataDir);
    await ready(next);
    assert.deepEqual(await readdir(join(root, dataDir, 'tmp')), [], 'no temp dirs after restart');
    await git(['fsck', '--full', '--strict', '--no-dangling'], { cwd: mirrorDir(dataDir) });
    return next;
  }

  it('during a restore extraction: the restart restores cleanly', async () => {
    const b = await start('restorer');
    await waitFor('download under way', async () => (await status(b))?.restore.phase === 'downloading', {
      timeoutMs: 60_000,
    });
    await b.stop('SIGKILL');
    const again = await assertRecovered('restorer');
    assert.equal((await status(again))?.restore.source, 'snapshot');
    await again.stop();
  });

  it('during a snapshot upload: the store keeps the previous snapshot, whole', async () => {
    const before = await manifest();
    const w = running[0]!;
    // New upstream commits so the next snapshot is not skipped as unchanged.
    const work = join(root, 'work');
    await git(['clone', '--quiet', upstream.url('big/mono.git'), work]);
    await addCommit(work, 'new.txt', 'new\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    await fetch(`${w.adminUrl}/v1/mirrors/${id}/snapshot`, { method: 'POST' });
    await waitFor('snapshot running', async () => (await status(w))?.snapshot.running === true, {
      timeoutMs: 30_000,
    });
    await new Promise((r) => setTimeout(r, 150));
    await w.stop('SIGKILL');
    const after = await manifest();
    const latest = JSON.parse(after) as { key: string; sizeBytes: number };
    const archive = await readFile(join(root, 'store', latest.key));
    assert.equal(archive.length, latest.sizeBytes, 'the manifest names a complete archive');
    if (after !== before) assert.notEqual(JSON.parse(before).key, latest.key);
    const visible = (await readdir(join(root, 'store', upstream.host, 'big', 'mono'))).filter(
      (f) => !f.startsWith('.'),
    );
    assert.ok(
      visible.every((f) => f === 'latest.json' || f.endsWith('.tar.zst')),
      visible.join(', '),
    );
    const next = await assertRecovered('writer');
    await next.stop();
  });

  it('during a fetch: the mirror is the old one or the new one, and fetches again', async () => {
    const f = await start('fetcher');
    await ready(f);
    const oldRefs = await refsOf(mirrorDir('fetcher'));
    // Something new upstream, so the killed fetch is really transferring.
    const work = join(root, 'work-fetch');
    await git(['clone', '--quiet', upstream.url('big/mono.git'), work]);
    await addCommit(work, 'fetch.txt', 'fetched\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const newRefs = await refsOf(join(root, 'upstream', 'big', 'mono.git'));
    assert.notEqual(newRefs, oldRefs);
    upstream.delayUploadPack(30_000);
    await fetch(`${f.adminUrl}/v1/mirrors/${id}/fetch`, { method: 'POST' });
    await new Promise((r) => setTimeout(r, 500));
    await f.stop('SIGKILL');
    upstream.delayUploadPack(0);
    const next = await assertRecovered('fetcher');
    const refs = await refsOf(mirrorDir('fetcher'));
    assert.ok(refs === oldRefs || refs === newRefs, 'all old refs or all new refs, never a mix');
    const res = await fetch(`${next.adminUrl}/v1/mirrors/${id}/fetch?wait=true`, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as MirrorStatus).lastFetchError, undefined);
    assert.equal(await refsOf(mirrorDir('fetcher')), newRefs);
    await next.stop();
  });
});
