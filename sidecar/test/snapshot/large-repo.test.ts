import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { parseRepoId } from '../../../core/repo-id.ts';
import { countObjects, fsck, headCommit, makeLargeRepo, refsOf } from '../../../testing/git-repos.ts';
import { publishSnapshot } from '../../src/snapshot/publish.ts';
import { downloadAndExtract } from '../../src/snapshot/restore-download.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';

/**
 * A repository with more than 100k objects survives the round trip, and the main thread
 * stays responsive while it is archived and extracted (the work runs in workers).
 */

/**
 * Bounds with room for a loaded 2-core CI machine, where descheduling alone shows up as
 * ~100-200 ms of delay. Utilization is the sharper check: compressing on the main thread
 * keeps it busy nearly all the time; with the work in workers it mostly waits.
 */
const MAX_LOOP_DELAY_MS = 500;
const MAX_UTILIZATION = 0.6;
const repo = parseRepoId('example.com/big/repo');
let root: string;
let source: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-large-'));
  source = await makeLargeRepo(join(root, 'big.git'), 2500, 40);
});
after(() => rm(root, { recursive: true, force: true }));

interface Measured<T> {
  value: T;
  ms: number;
  maxDelayMs: number;
  /** Share of the time the main thread was busy (0..1): compression on it would push this to ~1. */
  utilization: number;
}

async function measured<T>(work: () => Promise<T>): Promise<Measured<T>> {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  const startElu = performance.eventLoopUtilization();
  const started = performance.now();
  const value = await work();
  const ms = performance.now() - started;
  const { utilization } = performance.eventLoopUtilization(startElu);
  histogram.disable();
  return { value, ms, maxDelayMs: histogram.max / 1e6, utilization };
}

function describe_(m: Measured<unknown>): string {
  return `${m.ms.toFixed(0)} ms, loop max delay ${m.maxDelayMs.toFixed(1)} ms, loop utilization ${(m.utilization * 100).toFixed(0)}%`;
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
    t.diagnostic(`${objects} objects, archive ${mb.toFixed(1)} MB`);
    t.diagnostic(`publish: ${describe_(published)}`);
    t.diagnostic(`restore: ${describe_(restored)}`);
    for (const [name, m] of [
      ['publish', published],
      ['restore', restored],
    ] as const) {
      assert.ok(m.maxDelayMs < MAX_LOOP_DELAY_MS, `${name} blocked the loop for ${m.maxDelayMs} ms`);
      assert.ok(m.utilization < MAX_UTILIZATION, `${name} kept the main thread ${m.utilization} busy`);
    }

    await fsck(restored.value.dir);
    assert.equal(await refsOf(restored.value.dir), await refsOf(source));
    assert.equal(await countObjects(restored.value.dir), objects);
  });
});
