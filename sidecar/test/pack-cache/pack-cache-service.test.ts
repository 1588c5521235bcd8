import assert from 'node:assert/strict';
import { readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../../core/log.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { startPackCache } from '../../src/pack-cache/pack-cache-service.ts';

describe('the pack cache as the sidecar starts it', () => {
  let root: string;
  before(async () => {
    root = await tempDir();
  });
  after(() => removeDir(root));

  const start = (maxBytes?: number) =>
    startPackCache({
      dir: join(root, 'pack-cache'),
      maxBytes,
      ttlMs: 60_000,
      git: new ProcessGitRunner(),
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
    });

  it('takes a tenth of the data volume when no budget is set', async () => {
    const cache = await start();
    assert.ok(cache);
    const fs = await statfs(root);
    assert.equal(cache.stats().maxBytes, Math.floor(fs.blocks * fs.bsize * 0.1));
    await cache.close();
  });

  it('is off with a budget of 0, and leaves no directory behind', async () => {
    assert.equal(await start(0), undefined);
    assert.equal(await readdir(join(root, 'pack-cache')).catch(() => 'absent'), 'absent');
  });
});
