import assert from 'node:assert/strict';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { PackCacheService } from '../../src/pack-cache/pack-cache-service.ts';
import { removeDir, tempDir } from '../support/git-fixtures.ts';

describe('the pack cache as the sidecar starts it', () => {
  let root: string;
  before(async () => {
    root = await tempDir();
  });
  after(() => removeDir(root));

  const start = (dataDir: string, maxBytes?: number) =>
    PackCacheService.start({
      dataDir,
      maxBytes,
      ttlMs: 60_000,
      git: new ProcessGitRunner(),
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
      resolveRepository: () => undefined,
    });

  it('takes a tenth of the data volume when no budget is set', async () => {
    const service = await start(root);
    assert.ok(service);
    const fs = await statfs(root);
    assert.equal(service.stats().maxBytes, Math.floor(fs.blocks * fs.bsize * 0.1));
    const { args, env } = service.uploadPack();
    assert.match(args.join(' '), /^-c uploadpack\.packObjectsHook=exec '.*node' '.*pack-objects-hook\.mjs'$/);
    assert.equal(env.GITMIRROR_PACK_CACHE_SOCKET, join(root, 'pack-cache', 'hook.sock'));
    await service.close();
  });

  it('is off with a budget of 0, and when its socket path would be too long', async () => {
    assert.equal(await start(root, 0), undefined);
    assert.equal(await start(join(root, 'x'.repeat(100)), 1 << 20), undefined);
  });
});
