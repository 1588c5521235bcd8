import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { parseRepoId } from '../../src/mirrors/repo-id.ts';
import { FileSnapshotStore } from '../../src/snapshot/fs-store.ts';
import { publishSnapshot } from '../../src/snapshot/publish.ts';
import { downloadAndExtract } from '../../src/snapshot/restore-download.ts';
import { countObjects, forEachRef, fsck, headCommit, makeLargeRepo } from './support/git-fixtures.ts';

/**
 * A repository with more than 100k objects survives the round trip, and the main thread
 * stays responsive while it is archived and extracted (the work runs in workers).
 */

/** Generous: a blocked loop would show the whole archive time, seconds; a free one ~10 ms. */
const MAX_LOOP_DELAY_MS = 250;
const repo = parseRepoId('example.com/big/repo');
let root: string;
let source: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-large-'));
  source = await makeLargeRepo(join(root, 'big.git'), 2500, 40);
});
after(() => rm(root, { recursive: true, force: true }));

async function measured<T>(work: () => Promise<T>): Promise<{ value: T; ms: number; maxDelayMs: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  const started = performance.now();
  const value = await work();
  const ms = performance.now() - started;
  histogram.disable();
  return { value, ms, maxDelayMs: histogram.max / 1e6 };
}

describe('large repository', () => {
  it('round trips 100k+ objects with a responsive event loop', async (t) => {
    const objects = await countObjects(source);
    assert.ok(objects > 100_000, `fixture has ${objects} objects`);
    const store = new FileSnapshotStore(join(root, 'store'));
    const tempParent = join(root, 'tmp');
    await mkdir(tempParent);

    const commit = await headCommit(source);
    const published = await measured(() =>
      publishSnapshot({ store, repo, mirrorDir: source, commit, retain: 2 }),
    );
    const restored = await measured(() => downloadAndExtract({ store, repo, tempParent }));
    const mb = published.value.sizeBytes / 1e6;
    t.diagnostic(
      `${objects} objects, archive ${mb.toFixed(1)} MB; publish ${published.ms.toFixed(0)} ms ` +
        `(max loop delay ${published.maxDelayMs.toFixed(1)} ms); restore ${restored.ms.toFixed(0)} ms ` +
        `(max loop delay ${restored.maxDelayMs.toFixed(1)} ms)`,
    );
    assert.ok(
      published.maxDelayMs < MAX_LOOP_DELAY_MS,
      `archive blocked the loop ${published.maxDelayMs} ms`,
    );
    assert.ok(restored.maxDelayMs < MAX_LOOP_DELAY_MS, `extract blocked the loop ${restored.maxDelayMs} ms`);

    await fsck(restored.value.dir);
    assert.equal(await forEachRef(restored.value.dir), await forEachRef(source));
    assert.equal(await countObjects(restored.value.dir), objects);
  });
});
