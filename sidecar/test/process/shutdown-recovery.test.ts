import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startSidecarProcess } from '../../../testing/sidecar-process.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';

describe('stopping during a clone', () => {
  let root: string;
  let upstream: GitUpstream;

  before(async () => {
    root = await tempDir();
    await createUpstreamRepo(join(root, 'upstream', 'org'), 'slow', 20);
    upstream = await startGitUpstream(join(root, 'upstream'));
  });

  after(async () => {
    await upstream.close();
    await removeDir(root);
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`${signal} mid-clone leaves no temp dir after the next start, and the next start clones cleanly`, async () => {
      const dataDir = join(root, `data-${signal}`);
      const env = {
        GITMIRROR_DATA_DIR: dataDir,
        GITMIRROR_MIRRORS: upstream.url('org/slow.git'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
      };
      upstream.delayUploadPack(60_000);
      const first = await startSidecarProcess(env);
      await waitFor('clone under way', async () => (await readdir(join(dataDir, 'tmp'))).length > 0);
      const exit = await first.stop(signal);
      if (signal === 'SIGTERM') assert.equal(exit, 0, 'graceful shutdown exits 0');
      upstream.delayUploadPack(0);

      const second = await startSidecarProcess(env);
      try {
        await second.waitUntilOk('/readyz', { timeoutMs: 60_000 });
        assert.deepEqual(await readdir(join(dataDir, 'tmp')), [], 'no temp dirs left');
        await git(['fsck', '--strict'], { cwd: join(dataDir, 'mirrors', upstream.host, 'org', 'slow.git') });
      } finally {
        await second.stop();
      }
    });
  }
});
