import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { MirrorList } from '../../../core/admin-api.ts';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { createUpstreamRepo, makeIncompressibleRepo } from '../../../testing/git-repos.ts';
import { configureMirror, startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { commitLfsFiles, lfsEnvironment } from '../../../testing/lfs-client.ts';
import { type LfsUpstream, startLfsUpstream } from '../../../testing/lfs-upstream.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

const exec = promisify(execFile);
const MiB = 1024 * 1024;

describe('Git LFS objects in the data budget', () => {
  let root: string;
  let upstream: LfsUpstream;
  let sidecar: RunningSidecar;

  before(async () => {
    root = await tempDir('gitmirror-lfs-budget-');
    upstream = await startLfsUpstream(join(root, 'upstream'));
    const env = await lfsEnvironment(join(root, 'home'));
    const { work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'lfs', 2);
    const files = Object.fromEntries(['a', 'b', 'c'].map((n) => [`${n}.bin`, randomBytes(3 * MiB)]));
    await commitLfsFiles(work, files, env);
    await git(['push', '--quiet', upstream.url('org/lfs.git'), 'main'], { cwd: work, env });
    await makeIncompressibleRepo(join(root, 'upstream', 'org', 'big.git'), 8, MiB);
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_MIRRORS: upstream.url('org/lfs.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_DATA_BUDGET: '24MiB',
    });
    await waitFor('mirror ready', () => sidecar.isReady());
    // A client clones with LFS: the cache fetches the three objects and keeps them.
    await exec(
      'git',
      ['clone', '--quiet', `${sidecar.gitUrl}/git/${upstream.host}/org/lfs.git`, join(root, 'c')],
      {
        env: { ...GIT_ENV, ...env },
      },
    );
  });

  after(async () => {
    await sidecar?.shutdown();
    await upstream?.close();
    await removeDir(root);
  });

  const list = async () => (await (await fetch(`${sidecar.adminUrl}/v1/mirrors`)).json()) as MirrorList;
  const holderBytes = async (name: string) =>
    (await list()).storage?.holders.find((h) => h.name === name)?.bytes ?? 0;

  it('count as the lfs holder in GET /v1/mirrors and the metrics', async () => {
    assert.ok((await holderBytes('lfs')) >= 9 * MiB, `lfs holds ${await holderBytes('lfs')}`);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(metrics, /gitmirror_data_used_bytes\{holder="lfs"\} (\d+)/);
    const used = Number(/gitmirror_data_used_bytes\{holder="lfs"\} (\d+)/.exec(metrics)![1]);
    assert.ok(used >= 9 * MiB);
  });

  it('are evicted, as cache entries, to make room for a configured mirror that the budget could not hold beside them', async () => {
    const id = `${upstream.host}/org/big`;
    const big = await configureMirror(sidecar, { id, url: upstream.url('org/big.git') });
    assert.equal(big.state, 'ready', big.restore.error);
    const { storage, mirrors } = await list();
    const lfsEvicted = storage?.evicted.find((e) => e.holder === 'lfs');
    assert.equal(lfsEvicted?.tier, 'cache');
    assert.ok((lfsEvicted?.count ?? 0) >= 1);
    assert.ok((await holderBytes('lfs')) < 9 * MiB, 'some LFS objects were given up');
    assert.deepEqual(mirrors.map((m) => m.id).sort(), [id, `${upstream.host}/org/lfs`].sort());
    assert.ok(storage!.usedBytes <= 24 * MiB, `${storage!.usedBytes} used`);
  });
});
