import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createUpstreamRepo, git, removeDir, tempDir } from '../support/git-fixtures.ts';
import { type GitUpstream, startGitUpstream } from '../support/git-http-backend-server.ts';
import { startSidecarProcess } from '../support/sidecar-process.ts';
import { waitFor } from '../support/test-sidecar.ts';

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
        await waitFor('ready after restart', async () => (await fetch(`${second.gitUrl}/readyz`)).ok, 60_000);
        assert.deepEqual(await readdir(join(dataDir, 'tmp')), [], 'no temp dirs left');
        await git(['fsck', '--strict'], { cwd: join(dataDir, 'mirrors', upstream.host, 'org', 'slow.git') });
      } finally {
        await second.stop();
      }
    });
  }
});
