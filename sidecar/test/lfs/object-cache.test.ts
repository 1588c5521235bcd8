import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type LfsUpstream, startLfsUpstream } from '../../../testing/lfs-upstream.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { DiskBudget } from '../../src/budget/disk-budget.ts';
import type { LfsObjectCache } from '../../src/lfs/object-cache.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';
import { lfsObjectKey } from '../../src/store/lfs-objects.ts';
import { metricValue, randomContent, readAll, replicaCache, upstreamOpener } from './support.ts';

describe('the LFS object cache', () => {
  let root: string;
  let upstream: LfsUpstream;
  let opener: ReturnType<typeof upstreamOpener>;

  before(async () => {
    root = await tempDir('gitmirror-lfs-cache-');
    upstream = await startLfsUpstream(join(root, 'upstream'));
    opener = upstreamOpener(upstream, 'org/repo');
  });
  after(async () => {
    await upstream.close();
    await removeDir(root);
  });

  it('ten clients asking for one object at once cost upstream one download, and each gets every byte', async () => {
    const content = randomContent(6 * 1024 * 1024);
    const object = upstream.add('org/repo', content);
    upstream.fault(object.oid, 'slow');
    const { cache, registry } = await replicaCache(join(root, 'single-flight'));
    const opened = await Promise.all(
      Array.from({ length: 10 }, () => cache.open(object, { upstream: opener(object) })),
    );
    const bodies = await Promise.all(opened.map((o) => readAll(o)));
    for (const body of bodies) assert.ok(body.equals(content));
    await cache.idle();
    assert.deepEqual(new Set(opened.map((o) => o.source)), new Set(['upstream']));
    assert.equal(upstream.downloads(object.oid), 1);
    assert.equal(await metricValue(registry, 'gitmirror_lfs_upstream_bytes_total'), content.length);
    const again = await cache.open(object, { upstream: opener(object) });
    assert.equal(again.source, 'local');
    assert.ok((await readAll(again)).equals(content));
    assert.equal(upstream.downloads(object.oid), 1);
  });

  it('a client asking while the object arrives follows that download from its own offset', async () => {
    const content = randomContent(4 * 1024 * 1024);
    const object = upstream.add('org/repo', content);
    upstream.fault(object.oid, 'slow');
    const { cache } = await replicaCache(join(root, 'follow'));
    const first = await cache.open(object, { upstream: opener(object) });
    const whole = readAll(first);
    await new Promise((r) => setTimeout(r, 150));
    const range = { start: 1_000_000, end: content.length - 1 };
    const second = await cache.open(object, { range, upstream: opener(object) });
    assert.equal(second.source, 'upstream');
    assert.ok((await readAll(second)).equals(content.subarray(range.start)));
    assert.ok((await whole).equals(content));
    assert.equal(upstream.downloads(object.oid), 1);
  });

  for (const fault of ['corrupt', 'short'] as const) {
    it(`a ${fault} upstream object fails the client, is not kept, and the next request downloads it again`, async () => {
      const content = randomContent(512 * 1024);
      const object = upstream.add('org/repo', content);
      upstream.fault(object.oid, fault);
      const { cache, local, registry } = await replicaCache(join(root, `fault-${fault}`));
      const opened = await cache.open(object, { upstream: opener(object) });
      let received = 0;
      await assert.rejects(
        readAll(opened, (n) => {
          received += n;
        }),
        {
          code: fault === 'corrupt' ? 'LFS_OBJECT_CORRUPT' : 'UPSTREAM_FAILED',
        },
      );
      assert.ok(received < content.length, `the client got ${received} of ${content.length} bytes`);
      await cache.idle();
      assert.equal(local.has(object.oid), false);
      assert.deepEqual(await readdir(join(root, `fault-${fault}`, 'lfs', 'tmp')), []);
      if (fault === 'corrupt')
        assert.equal(
          await metricValue(registry, 'gitmirror_lfs_verify_failures_total', { source: 'upstream' }),
          1,
        );

      upstream.fault(object.oid, undefined);
      const retry = await cache.open(object, { upstream: opener(object) });
      assert.ok((await readAll(retry)).equals(content));
      await cache.idle();
      assert.equal(upstream.downloads(object.oid), 2);
      assert.equal(local.has(object.oid), true);
    });
  }

  it('one replica copies what it fetched to the store; another reads it from there, verified', async () => {
    const store = new FileSnapshotStore(join(root, 'store'));
    const content = randomContent(1024 * 1024);
    const object = upstream.add('org/repo', content);
    const a = await replicaCache(join(root, 'replica-a'), { store });
    assert.equal(await a.cache.locate(object), undefined);
    await readAll(await a.cache.open(object, { upstream: opener(object) }));
    await a.cache.idle();
    assert.ok((await readFile(join(root, 'store', lfsObjectKey(object.oid)))).equals(content));
    assert.equal(await metricValue(a.registry, 'gitmirror_lfs_store_writes_total', { outcome: 'ok' }), 1);

    const b = await replicaCache(join(root, 'replica-b'), { store });
    assert.equal(await b.cache.locate(object), 'store');
    const fromStore = await b.cache.open(object, { upstream: opener(object) });
    assert.equal(fromStore.source, 'store');
    assert.ok((await readAll(fromStore)).equals(content));
    assert.equal(upstream.downloads(object.oid), 1, 'replica B moved no bytes from upstream');

    // A damaged store copy (same size, one byte off) is refused, then replaced from upstream.
    const damaged = Buffer.from(content);
    damaged[0]! ^= 1;
    await writeFile(join(root, 'store', lfsObjectKey(object.oid)), damaged);
    const c = await replicaCache(join(root, 'replica-c'), { store });
    const bad = await c.cache.open(object, { upstream: opener(object) });
    assert.equal(bad.source, 'store');
    await assert.rejects(readAll(bad), {
      code: 'LFS_OBJECT_CORRUPT',
      message: /the snapshot store sent content/,
    });
    await c.cache.idle();
    assert.equal(
      await metricValue(c.registry, 'gitmirror_lfs_verify_failures_total', { source: 'store' }),
      1,
    );
    const retry = await c.cache.open(object, { upstream: opener(object) });
    assert.equal(retry.source, 'upstream');
    assert.ok((await readAll(retry)).equals(content));
    await c.cache.idle();
    assert.ok((await readFile(join(root, 'store', lfsObjectKey(object.oid)))).equals(content));
  });

  it('serves ranges of a held object from disk', async () => {
    const content = randomContent(100_000);
    const object = upstream.add('org/repo', content);
    const { cache } = await replicaCache(join(root, 'ranges'));
    await readAll(await cache.open(object, { upstream: opener(object) }));
    await cache.idle();
    const part = await cache.open(object, { range: { start: 10, end: 99 }, upstream: opener(object) });
    assert.equal(part.source, 'local');
    assert.ok((await readAll(part)).equals(content.subarray(10, 100)));
  });

  it('evicts least recently used objects first, keeps the order across a restart, and stays within its bound', async () => {
    const dir = join(root, 'evict');
    const objects = [1, 2, 3].map(() => upstream.add('org/repo', randomContent(256 * 1024)));
    const first = await replicaCache(dir);
    for (const object of objects) {
      await readAll(await first.cache.open(object, { upstream: opener(object) }));
      await first.cache.idle();
    }
    // Use the first one again: the second is now the least recently used.
    await readAll(await first.cache.open(objects[0]!, { upstream: opener(objects[0]!) }));
    // The seam a data budget works with: what is held, what could go (oldest use first), evict.
    assert.equal(first.cache.bytesHeld(), 3 * 256 * 1024);
    const candidates = first.cache.evictionCandidates();
    assert.deepEqual(
      candidates.map((c) => c.key),
      [objects[1]!.oid, objects[2]!.oid, objects[0]!.oid],
    );
    assert.ok(candidates.every((c) => c.bytes === 256 * 1024 && c.tier === 'cache'));
    assert.deepEqual(await first.cache.evict([candidates[0]!.key]), [
      { key: candidates[0]!.key, bytes: 256 * 1024 },
    ]);
    assert.equal(first.cache.bytesHeld(), 2 * 256 * 1024);
    assert.deepEqual(
      objects.map((o) => first.local.has(o.oid)),
      [true, false, true],
    );

    // GITMIRROR_LFS_MAX_BYTES is kept by the data budget (here one without a limit), as any eviction.
    const budget = new DiskBudget({ dataDir: dir, freeBytes: async () => 2 ** 40 });
    const restarted = await replicaCache(dir, { maxLocalBytes: 300 * 1024, space: budget });
    budget.add(restarted.cache);
    assert.equal(restarted.local.objectCount, 2);
    assert.equal(restarted.local.bytesHeld, 2 * 256 * 1024);
    await readAll(await restarted.cache.open(objects[1]!, { upstream: opener(objects[1]!) }));
    await restarted.cache.idle();
    assert.equal(restarted.local.bytesHeld, 256 * 1024);
    assert.equal(restarted.local.has(objects[1]!.oid), true);
    assert.equal(await metricValue(restarted.registry, 'gitmirror_lfs_evicted_bytes_total'), 2 * 256 * 1024);
    assert.deepEqual(budget.usage().evicted, [
      { holder: 'lfs', tier: 'cache', count: 2, bytes: 2 * 256 * 1024 },
    ]);
  });

  it('within a data budget: a download reserves its size first, evicting the least recently used; refused, upstream is not asked', async () => {
    const KIB = 1024;
    const budget = new FakeBudget(600 * KIB);
    const { cache, local } = await replicaCache(join(root, 'budget'), { space: budget });
    budget.add(cache);
    const [a, b, c] = [1, 2, 3].map(() => upstream.add('org/repo', randomContent(256 * KIB)));
    for (const o of [a!, b!]) {
      await readAll(await cache.open(o, { upstream: opener(o) }));
      await cache.idle();
    }
    assert.deepEqual(budget.purposes, [
      `download of LFS object ${a!.oid}`,
      `download of LFS object ${b!.oid}`,
    ]);
    assert.equal(budget.reservedBytes, 0, 'a finished download gives its reservation back');
    assert.equal(cache.bytesHeld(), 512 * KIB, 'held once, not also as the reservation');
    // a is the least recently used: it makes room for c.
    await readAll(await cache.open(c!, { upstream: opener(c!) }));
    await cache.idle();
    assert.deepEqual(
      [a, b, c].map((o) => local.has(o!.oid)),
      [false, true, true],
    );

    const tooBig = upstream.add('org/repo', randomContent(700 * KIB));
    await assert.rejects(cache.open(tooBig, { upstream: opener(tooBig) }), /no room/);
    assert.equal(upstream.downloads(tooBig.oid), 0, 'nothing was asked of upstream');
    assert.equal(budget.reservedBytes, 0);
    assert.deepEqual(await readdir(join(root, 'budget', 'lfs', 'tmp')), []);
  });

  it('ensure() puts an object in the store whether it was held here, elsewhere or nowhere', async () => {
    const store = new FileSnapshotStore(join(root, 'ensure-store'));
    const [x, y] = [
      upstream.add('org/repo', randomContent(2000)),
      upstream.add('org/repo', randomContent(3000)),
    ];
    const plain = await replicaCache(join(root, 'ensure-plain'));
    await readAll(await plain.cache.open(x, { upstream: opener(x) }));
    await plain.cache.idle();
    const withStore = await replicaCache(join(root, 'ensure-plain'), { store });
    assert.equal(await withStore.cache.ensure(x, opener(x)), 'local');
    assert.equal(await withStore.cache.ensure(y, opener(y)), 'upstream');
    assert.equal(await withStore.cache.ensure(y, opener(y)), 'local');
    const other = await replicaCache(join(root, 'ensure-other'), { store });
    assert.equal(await other.cache.ensure(x, opener(x)), 'store');
    assert.equal(upstream.downloads(y.oid), 1);
    for (const o of [x, y]) assert.ok(await store.head(lfsObjectKey(o.oid)));
  });
});

/**
 * The disk budget as the cache meets it (the sidecar's own is tested with its holders
 * elsewhere): holders' bytes plus reservations within a limit, the least recently used
 * candidates evicted to make room, a refusal when even that is not enough.
 */
class FakeBudget {
  readonly purposes: string[] = [];
  reservedBytes = 0;
  private readonly holders: LfsObjectCache[] = [];
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  add(holder: LfsObjectCache): void {
    this.holders.push(holder);
  }

  async keepWithin(): Promise<void> {
    throw new Error('this test sets no GITMIRROR_LFS_MAX_BYTES');
  }

  async reserve(request: { bytes: number; purpose: string }): Promise<{ release(): void }> {
    const used = () => this.holders.reduce((sum, h) => sum + h.bytesHeld(), 0) + this.reservedBytes;
    for (const holder of this.holders)
      for (const candidate of holder.evictionCandidates()) {
        if (used() + request.bytes <= this.limit) break;
        await holder.evict([candidate.key]);
      }
    if (used() + request.bytes > this.limit) throw new Error(`no room for ${request.purpose}`);
    this.purposes.push(request.purpose);
    this.reservedBytes += request.bytes;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.reservedBytes -= request.bytes;
      },
    };
  }
}
