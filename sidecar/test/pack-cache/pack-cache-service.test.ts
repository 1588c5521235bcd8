import assert from 'node:assert/strict';
import { statfs } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { startPackCache } from '../../src/pack-cache/pack-cache-service.ts';
import { removeDir, tempDir } from '../support/git-fixtures.ts';

describe('the pack cache as the sidecar starts it', () => {
  let root: string;
  before(async () => {
    root = await tempDir();
  });
  after(() => removeDir(root));

  const start = (maxBytes?: number) =>
    startPackCache({
      dataDir: root,
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

  it('is off with a budget of 0', async () => {
    assert.equal(await start(0), undefined);
  });
});
