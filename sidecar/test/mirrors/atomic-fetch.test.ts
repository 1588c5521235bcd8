import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { fetchMirror } from '../../src/mirrors/git-mirror-ops.ts';

describe('a mirror fetch that fails after upstream listed its refs', () => {
  let root: string;
  let upstream: GitUpstream;
  let work: string;

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 3));
    upstream = await startGitUpstream(join(root, 'upstream'));
  });

  after(async () => {
    await upstream.close();
    await removeDir(root);
  });

  it('leaves every ref as it was: nothing pruned before the pack arrived', async () => {
    await git(['tag', 'v1'], { cwd: work });
    await git(['push', '--quiet', 'origin', 'v1'], { cwd: work });
    const mirror = join(root, 'mirror.git');
    await git(['clone', '--quiet', '--mirror', upstream.url('org/repo.git'), mirror]);
    const before = await refsOf(mirror);
    // Upstream moves main on, then deletes the tag: it never had the old main without the tag.
    await addCommit(work, 'next.txt', 'next\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    await git(['push', '--quiet', 'origin', ':refs/tags/v1'], { cwd: work });
    upstream.refusePacks(true);

    const ctx = { git: new ProcessGitRunner(), dir: mirror, upstream: upstream.url('org/repo.git') };
    await assert.rejects(fetchMirror(ctx, { timeoutMs: 60_000, lowSpeedAbort: false }));

    assert.equal(await refsOf(mirror), before, 'clients are still served a state upstream had');
  });
});
