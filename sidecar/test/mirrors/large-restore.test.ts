import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import { countObjects, makeLargeRepo, objectsOf, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

describe('a replica restored from a snapshot of a 100k-object repository', () => {
  let root: string;
  let upstream: GitUpstream;
  const sidecars: RunningSidecar[] = [];

  before(async () => {
    root = await tempDir();
    await makeLargeRepo(join(root, 'upstream', 'big', 'mono.git'), 2500, 40);
    upstream = await startGitUpstream(join(root, 'upstream'));
  });

  after(async () => {
    for (const s of sidecars) await s.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  const start = async (name: string) => {
    const sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, name),
      GITMIRROR_MIRRORS: upstream.url('big/mono.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${join(root, 'store')}`,
    });
    sidecars.push(sidecar);
    await waitFor(`${name} ready`, () => sidecar.isReady(), { timeoutMs: 240_000 });
    return sidecar;
  };

  it('equals its source in refs and objects, is fsck clean, and serves clones', async () => {
    const id = `${upstream.host}/big/mono`;
    const writer = await start('writer');
    const source = writer.mirrors.get(id)!;
    assert.ok((await countObjects(source.dir)) > 100_000);
    await writer.mirrors.snapshot(source);

    const replica = await start('replica');
    const restored = replica.mirrors.get(id)!;
    assert.equal(restored.restore.source, 'snapshot');
    assert.equal(await refsOf(restored.dir), await refsOf(source.dir));
    assert.deepEqual(await objectsOf(restored.dir), await objectsOf(source.dir));
    await git(['fsck', '--full', '--strict', '--no-dangling'], { cwd: restored.dir });

    const clone = join(root, 'clone');
    await git(['clone', '--quiet', '--bare', `${replica.gitUrl}/git/${id}.git`, clone]);
    assert.equal(await refsOf(clone, 'refs/heads/'), await refsOf(source.dir, 'refs/heads/'));
  });
});
