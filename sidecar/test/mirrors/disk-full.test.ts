import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

const exec = promisify(execFile);

/** A small tmpfs is the data dir: a real ENOSPC, not a simulated one. Needs mount rights (root). */
async function mountTmpfs(dir: string, size: string): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  return exec('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]).then(
    () => true,
    () => false,
  );
}

describe('a full disk', {
  skip: process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs' : false,
}, () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let work: string;
  let dataDir: string;
  let id: string;

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'fat', 5));
    upstream = await startGitUpstream(join(root, 'upstream'));
    dataDir = join(root, 'data');
    assert.ok(await mountTmpfs(dataDir, '24m'), 'mount tmpfs');
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: dataDir,
      GITMIRROR_MIRRORS: upstream.url('org/fat.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${join(root, 'store')}`,
    });
    await waitFor('ready', () => sidecar.isReady());
    id = `${upstream.host}/org/fat`;
  });

  after(async () => {
    await sidecar?.shutdown();
    await upstream?.close();
    await exec('umount', ['-l', join(root, 'data')]).catch(() => {});
    await removeDir(root);
  });

  it('fails a fetch with a clear error, keeps the old mirror, and recovers once space returns', async (t) => {
    const mirror = sidecar.mirrors.get(id)!;
    const before = await refsOf(mirror.dir);
    // 40 MB of incompressible data upstream: more than the 24 MB tmpfs can take.
    await writeFile(join(work, 'blob.bin'), randomBytes(40 * 1024 * 1024));
    await git(['add', 'blob.bin'], { cwd: work });
    await git(['commit', '--quiet', '-m', 'huge'], { cwd: work });
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });

    await assert.rejects(sidecar.mirrors.fetch(mirror, { lowSpeedAbort: false }));
    t.diagnostic(`fetch error: ${mirror.status().lastFetchError}`);
    // Whichever comes first: the kernel's ENOSPC, or the growth watch seeing the volume fill up.
    assert.match(
      mirror.status().lastFetchError ?? '',
      /no space left|ENOSPC|^INSUFFICIENT_STORAGE: fetch of .* needs [\d.]+ MiB: the data volume has/i,
    );
    assert.equal(await refsOf(mirror.dir), before, 'the mirror still has its old refs');
    await git(['fsck', '--connectivity-only'], { cwd: mirror.dir });
    const clone = join(root, 'clone-while-full');
    await git(['clone', '--quiet', '--bare', `${sidecar.gitUrl}/git/${id}.git`, clone]).catch(() => {});

    await exec('mount', ['-o', 'remount,size=256m', dataDir]);
    await sidecar.mirrors.fetch(mirror, { lowSpeedAbort: false });
    assert.equal(mirror.status().lastFetchError, undefined);
    assert.equal(
      (await refsOf(mirror.dir, 'refs/heads/main')).split(' ')[0],
      (await git(['rev-parse', 'HEAD'], { cwd: work })).trim(),
    );
    assert.deepEqual(await readdir(join(dataDir, 'tmp')), []);
  });

  it('refuses a restore that cannot fit before writing, with the sizes, then restores once space returns', async (t) => {
    const mirror = sidecar.mirrors.get(id)!;
    await sidecar.mirrors.snapshot(mirror);
    // Another replica whose data dir is too small for the mirror.
    const smallDir = join(root, 'small');
    assert.ok(await mountTmpfs(smallDir, '8m'));
    const replica = await startTestSidecar({
      GITMIRROR_DATA_DIR: smallDir,
      GITMIRROR_MIRRORS: upstream.url('org/fat.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${join(root, 'store')}`,
    });
    try {
      const restored = replica.mirrors.get(id)!;
      await waitFor('warm-up failed', () => restored.state === 'failed', { timeoutMs: 60_000 });
      t.diagnostic(`restore error: ${restored.restore.error}`);
      // Refused before the download started: the manifest says how much the archive extracts to.
      assert.match(
        restored.restore.error ?? '',
        /^INSUFFICIENT_STORAGE: restore of .*\/org\/fat needs [\d.]+ MiB: the data volume has [\d.]+ MiB free, .*; [\d.]+ MiB missing$/,
      );
      assert.equal(restored.restore.bytesDone, 0, 'not a byte downloaded');
      assert.ok((restored.status().disk?.shortfall?.missingBytes ?? 0) > 40 * 1024 * 1024);
      assert.deepEqual(await readdir(join(smallDir, 'tmp')), [], 'temp dirs removed');
      await exec('mount', ['-o', 'remount,size=256m', smallDir]);
      await replica.mirrors.warm(restored);
      assert.equal(restored.restore.source, 'snapshot');
      assert.equal(await refsOf(restored.dir), await refsOf(mirror.dir));
    } finally {
      await replica.shutdown();
      await exec('umount', ['-l', smallDir]).catch(() => {});
    }
  });
});
