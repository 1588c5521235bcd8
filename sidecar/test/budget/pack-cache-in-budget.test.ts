import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorList } from '../../../core/admin-api.ts';
import { git } from '../../../testing/git.ts';
import { makeIncompressibleRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { configureMirror, startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

const MiB = 1024 * 1024;

describe('the pack cache in the data budget', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;

  before(async () => {
    root = await tempDir('gitmirror-pack-budget-');
    const repos = join(root, 'upstream', 'org');
    await makeIncompressibleRepo(join(repos, 'a.git'), 6, MiB);
    await makeIncompressibleRepo(join(repos, 'big.git'), 8, MiB);
    upstream = await startGitUpstream(join(root, 'upstream'));
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_ALLOWED_HOSTS: upstream.host,
      GITMIRROR_MIRRORS: upstream.url('org/a.git'),
      GITMIRROR_DATA_BUDGET: '24MiB',
      GITMIRROR_PACK_CACHE_MAX_BYTES: '16MiB',
      GITMIRROR_PACK_CACHE_TTL: '1h',
    });
    await waitFor('mirror ready', () => sidecar.isReady(), { timeoutMs: 60_000 });
    // A client clone leaves its pack (about 6 MiB, incompressible) in the pack cache.
    await git([
      'clone',
      '--quiet',
      '--bare',
      `${sidecar.gitUrl}/git/${upstream.host}/org/a.git`,
      join(root, 'c'),
    ]);
  });

  after(async () => {
    await sidecar?.shutdown();
    await upstream?.close();
    await removeDir(root);
  });

  const list = async () => (await (await fetch(`${sidecar.adminUrl}/v1/mirrors`)).json()) as MirrorList;
  const packCacheBytes = async () =>
    (await list()).storage?.holders.find((h) => h.name === 'pack-cache')?.bytes ?? 0;

  it('counts as the pack-cache holder in GET /v1/mirrors', async () => {
    assert.ok((await packCacheBytes()) >= 5 * MiB, `pack-cache holds ${await packCacheBytes()}`);
  });

  it('gives up its idle packs, as cache entries, for a configured mirror the budget could not hold beside them (a clone with no snapshot to size it is reckoned at 16 MiB)', async () => {
    const id = `${upstream.host}/org/big`;
    const big = await configureMirror(sidecar, { id, url: upstream.url('org/big.git') });
    assert.equal(big.state, 'ready', big.restore.error);
    const { storage } = await list();
    const evicted = storage?.evicted.find((e) => e.holder === 'pack-cache');
    assert.equal(evicted?.tier, 'cache');
    assert.equal(await packCacheBytes(), 0, 'the idle pack was deleted');
    assert.ok(storage!.usedBytes <= 24 * MiB, `${storage!.usedBytes} used`);
    // The mirror whose pack was evicted still serves: the next clone generates it again.
    await git([
      'clone',
      '--quiet',
      '--bare',
      `${sidecar.gitUrl}/git/${upstream.host}/org/a.git`,
      join(root, 'd'),
    ]);
  });
});
