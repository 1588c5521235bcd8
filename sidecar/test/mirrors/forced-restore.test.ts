import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

describe('a forced restore whose catch-up fails', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let repoId: string;
  let work: string;

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 10));
    upstream = await startGitUpstream(join(root, 'upstream'));
    repoId = `${upstream.host}/org/repo`;
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${join(root, 'store')}`,
    });
    await waitFor('sidecar ready', () => sidecar.isReady());
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  it('keeps serving the mirror it had, untouched, when the restored one cannot catch up', async () => {
    const mirror = sidecar.mirrors.get(repoId)!;
    const { manifest } = await sidecar.mirrors.snapshot(mirror);
    // Upstream moves on, so the restored snapshot needs a catch-up fetch, which upstream refuses.
    await addCommit(work, 'after-snapshot.txt', 'new\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const served = await refsOf(mirror.dir);
    upstream.refusePacks(true);

    const outcome = await sidecar.mirrors.warm(mirror, { key: manifest.key, force: true }).then(
      () => 'warmed',
      (err: unknown) => err,
    );

    assert.ok(isGitMirrorError(outcome), `the forced restore failed: ${String(outcome)}`);
    assert.match(mirror.status().restore.error ?? '', /catch-up fetch failed|clone/);
    assert.equal(await refsOf(mirror.dir), served, 'the served mirror is the one from before');
    await git(['fsck', '--strict'], { cwd: mirror.dir });
    const clone = join(root, 'clone');
    await git(['clone', '--quiet', '--mirror', `${sidecar.gitUrl}/git/${repoId}.git`, clone]);
    assert.equal(await refsOf(clone), served, 'clients still clone it');
  });
});
