import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '../../../core/clock.ts';
import { silentLogger } from '../../../core/log.ts';
import { objectsOf } from '../../../testing/git-repos.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { GitRunner } from '../../src/git/git-runner.ts';
import { type Acquired, type EvictionReason, PackCache } from '../../src/pack-cache/pack-cache.ts';
import type { PackLease } from '../../src/pack-cache/pack-entry.ts';
import { parsePackObjectsArgs } from '../../src/pack-cache/pack-request.ts';
import {
  CLONE_ARGS,
  cloneStdin,
  createPackRepo,
  objectsInPack,
  packObjectsPid,
  RecordingGit,
  readLease,
} from './fixtures.ts';

/** What the cache reported, in order. */
class Counts {
  lookups: string[] = [];
  generations: string[] = [];
  evictions: EvictionReason[] = [];
  served = 0;
  lookup(result: string) {
    this.lookups.push(result);
  }
  generation(outcome: string) {
    this.generations.push(outcome);
  }
  evicted(reason: EvictionReason) {
    this.evictions.push(reason);
  }
  servedBytes(bytes: number) {
    this.served += bytes;
  }
}

function leaseOf(acquired: Acquired): PackLease {
  assert.ok('lease' in acquired, `expected a lease, got ${JSON.stringify(acquired)}`);
  return acquired.lease;
}

describe('pack cache: one generation per identical request', () => {
  let root: string;
  let bare: string;
  let branches: string[];
  let n = 0;

  before(async () => {
    root = await tempDir();
    ({ bare, branches } = await createPackRepo(join(root, 'upstream')));
  });
  after(() => removeDir(root));

  async function openCache(
    git: GitRunner,
    options: { maxBytes?: number; ttlMs?: number; clock?: Clock; observer?: Counts } = {},
  ) {
    const dir = join(root, `cache-${++n}`);
    const cache = await PackCache.open({
      dir,
      maxBytes: options.maxBytes ?? 1 << 30,
      ttlMs: options.ttlMs ?? 60_000,
      git,
      gitVersion: 'git version test',
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
      observer: options.observer && {
        lookup: (r) => options.observer!.lookup(r),
        generation: (o) => options.observer!.generation(o),
        evicted: (r) => options.observer!.evicted(r),
        served: (_role, b) => options.observer!.servedBytes(b),
      },
      clock: options.clock,
      pollMs: 5,
    });
    return { cache, dir };
  }

  async function request(refs: string[] | Buffer = ['main', ...branches]) {
    const stdin = Buffer.isBuffer(refs) ? refs : await cloneStdin(bare, refs);
    const parsed = parsePackObjectsArgs(CLONE_ARGS, stdin);
    assert.ok(!('unsupported' in parsed));
    return { repoId: 'example.com/org/repo', dir: bare, request: parsed };
  }

  it('lets identical requests join one generation, then answers the next from disk', async () => {
    const git = new RecordingGit({ startDelay: 0.3 });
    const counts = new Counts();
    const { cache } = await openCache(git, { observer: counts });
    const req = await request();
    // Asked at once: the later four join while the first one's file is still being created.
    const leases = (await Promise.all(Array.from({ length: 5 }, () => cache.acquire(req)))).map(leaseOf);
    assert.deepEqual(
      leases.map((l) => l.role),
      ['miss', 'joined', 'joined', 'joined', 'joined'],
    );
    const packs = await Promise.all(leases.map(readLease));
    for (const [i, lease] of leases.entries()) lease.release(packs[i]!.length);
    const hit = leaseOf(await cache.acquire(req));
    assert.equal(hit.role, 'hit');
    const fromDisk = await readLease(hit);
    hit.release(fromDisk.length);
    assert.equal(git.generations.length, 1, 'pack-objects ran once');
    for (const pack of packs) assert.ok(pack.equals(fromDisk));
    assert.deepEqual(await objectsInPack(fromDisk, join(root, `index-${n}`)), await objectsOf(bare));
    assert.deepEqual(counts.generations, ['success']);
    assert.equal(counts.served, 6 * fromDisk.length);
    await cache.close();
  });

  it('fails every reader of a generation whose pack-objects is killed, keeps nothing, and generates afresh', async () => {
    const releaseFile = join(root, 'release-kill');
    const git = new RecordingGit({ stallAfterBytes: 64 * 1024, releaseFile });
    const { cache, dir } = await openCache(git);
    const req = await request();
    const first = leaseOf(await cache.acquire(req));
    const second = leaseOf(await cache.acquire(req));
    const reads = [readLease(first), readLease(second)].map((p) =>
      p.then(
        () => 'whole',
        (e: Error) => e.message,
      ),
    );
    await waitFor('the first 64 KiB', () => first.bytes >= 64 * 1024, { timeoutMs: 20_000 });
    process.kill(await packObjectsPid(git.generations[0]!), 'SIGKILL');
    await writeFile(releaseFile, '');
    const outcomes = await Promise.all(reads);
    for (const outcome of outcomes) assert.match(outcome, /exited with 137|SIGKILL/);
    first.release();
    second.release();
    await waitFor('the failed entry deleted', async () => (await readdir(dir)).length === 0);
    assert.equal(cache.bytesHeld(), 0);
    const again = leaseOf(await cache.acquire(req));
    assert.equal(again.role, 'miss', 'a failed generation is never served');
    const pack = await readLease(again);
    again.release();
    assert.deepEqual(await objectsInPack(pack, join(root, `index-${n}`)), await objectsOf(bare));
    assert.equal(git.generations.length, 2);
    await cache.close();
  });

  it('keeps a generation running while anyone reads it and stops it when the last reader leaves', async () => {
    const git = new RecordingGit({ stallAfterBytes: 32 * 1024, releaseFile: join(root, 'never') });
    const counts = new Counts();
    const { cache, dir } = await openCache(git, { observer: counts });
    const req = await request();
    const leaving = leaseOf(await cache.acquire(req));
    const staying = leaseOf(await cache.acquire(req));
    await waitFor('generation started', () => staying.bytes > 0, { timeoutMs: 20_000 });
    leaving.release();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(staying.state, 'generating');
    staying.release();
    await waitFor('generation abandoned', () => counts.generations.length === 1, { timeoutMs: 20_000 });
    assert.deepEqual(counts.generations, ['abandoned']);
    assert.equal(staying.state, 'failed');
    await waitFor('file deleted', async () => (await readdir(dir)).length === 0);
    await cache.close();
  });

  it('serves a completed entry for the TTL, then generates again', async () => {
    const clock = new TestClock(1_000_000);
    const git = new RecordingGit();
    const counts = new Counts();
    const { cache } = await openCache(git, { ttlMs: 60_000, clock, observer: counts });
    const req = await request();
    const first = leaseOf(await cache.acquire(req));
    await readLease(first);
    first.release();
    clock.advance(59_000);
    const hit = leaseOf(await cache.acquire(req));
    assert.equal(hit.role, 'hit');
    hit.release();
    assert.deepEqual(
      cache.evictionCandidates().map((c) => c.tier),
      ['cache'],
    );
    clock.advance(1_000);
    // Past its TTL it is offered to the data budget first, before it is even asked for again.
    assert.deepEqual(
      cache.evictionCandidates().map((c) => c.tier),
      ['expired'],
    );
    const expired = leaseOf(await cache.acquire(req));
    assert.equal(expired.role, 'miss');
    await readLease(expired);
    expired.release();
    assert.deepEqual(counts.evictions, ['ttl']);
    assert.equal(git.generations.length, 2);
    await cache.close();
  });

  it('evicts the least recently used idle entry to stay within its byte budget', async () => {
    let now = 0;
    const git = new RecordingGit();
    const counts = new Counts();
    // Each branch's pack holds its own 96 KiB file: two fit, three do not.
    const { cache } = await openCache(git, {
      maxBytes: 250 * 1024,
      clock: { now: () => ++now },
      observer: counts,
    });
    const fetchBranch = async (branch: string) => {
      const lease = leaseOf(await cache.acquire(await request([branch])));
      await readLease(lease);
      lease.release();
      return lease;
    };
    await fetchBranch('alpha');
    await fetchBranch('beta');
    assert.equal((await fetchBranch('alpha')).role, 'hit');
    await fetchBranch('gamma');
    assert.deepEqual(counts.evictions, ['budget']);
    assert.equal((await fetchBranch('alpha')).role, 'hit', 'the recently used entry stayed');
    assert.equal((await fetchBranch('gamma')).role, 'hit');
    assert.equal((await fetchBranch('beta')).role, 'miss', 'the least recently used one went');
    assert.ok(cache.bytesHeld() <= 250 * 1024);
    await cache.close();
  });

  it('holds its byte budget under a flood of distinct requests', async () => {
    const git = new RecordingGit();
    const counts = new Counts();
    const maxBytes = 300 * 1024;
    const { cache, dir } = await openCache(git, { maxBytes, observer: counts });
    // Every "fetch X having Y" of the repository's commits: 42 distinct packs of 1–260 KiB.
    const commits = await readRevList(bare);
    const fetches = commits.flatMap((want) =>
      commits.filter((have) => have !== want).map((have) => Buffer.from(`${want}\n--not\n${have}\n\n`)),
    );
    let peakOnDisk = 0;
    let largestPack = 0;
    const sampler = setInterval(async () => {
      peakOnDisk = Math.max(peakOnDisk, await diskBytes(dir));
    }, 5);
    const clients = 3;
    const queue = [...fetches];
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let stdin = queue.shift(); stdin; stdin = queue.shift()) {
          const acquired = await cache.acquire(await request(stdin));
          if (!('lease' in acquired)) continue;
          const pack = await readLease(acquired.lease);
          largestPack = Math.max(largestPack, pack.length);
          acquired.lease.release(pack.length);
          peakOnDisk = Math.max(peakOnDisk, await diskBytes(dir));
        }
      }),
    );
    clearInterval(sampler);
    assert.ok(counts.evictions.length > 0, 'entries were evicted');
    assert.ok(cache.bytesHeld() <= maxBytes, `held ${cache.bytesHeld()}`);
    assert.ok((await diskBytes(dir)) <= maxBytes);
    // The running total never drifted from the files through all the growth and evictions
    // (a retired entry counts as freed before its unlink is done).
    await waitFor('bytes held equal to the files', async () => cache.bytesHeld() === (await diskBytes(dir)));
    // Only generations already running when the budget filled can take it past the limit.
    assert.ok(peakOnDisk <= maxBytes + clients * largestPack, `peak ${peakOnDisk}`);
    await cache.close();
  });

  it('removes a deleted mirror’s entries and frees idle bytes on request, never under a reader', async () => {
    const git = new RecordingGit();
    const { cache, dir } = await openCache(git);
    const reading = leaseOf(await cache.acquire(await request(['alpha'])));
    await readLease(reading);
    const idle = leaseOf(await cache.acquire(await request(['beta'])));
    await readLease(idle);
    idle.release();
    const held = cache.bytesHeld();
    const offered = cache.evictionCandidates();
    assert.deepEqual(
      offered.map((c) => [c.key, c.tier]),
      [[idle.key, 'cache']],
      'only the idle entry is offered',
    );
    assert.deepEqual(await cache.evict(offered.map((c) => c.key)), [{ key: idle.key, bytes: idle.bytes }]);
    assert.equal(cache.bytesHeld(), held - idle.bytes);
    cache.dropRepository('example.com/org/repo');
    assert.equal((await readdir(dir)).length, 1, 'the file being read stays until its reader is done');
    assert.equal(leaseOf(await cache.acquire(await request(['alpha']))).role, 'miss');
    reading.release();
    await waitFor('the dropped entry deleted', async () => (await readdir(dir)).length <= 1);
    await cache.close();
  });

  it('bypasses a request whose entry cannot be created, and every identical one that came meanwhile', async () => {
    const git = new RecordingGit();
    const counts = new Counts();
    const { cache, dir } = await openCache(git, { observer: counts });
    const req = await request();
    // The file is created without blocking the event loop, so a gone directory shows only then.
    await rm(dir, { recursive: true });
    const both = await Promise.all([cache.acquire(req), cache.acquire(req)]);
    assert.deepEqual(both, [{ bypass: 'unavailable' }, { bypass: 'unavailable' }]);
    assert.deepEqual(counts.lookups, ['bypass', 'bypass']);
    await waitFor('the failed generation counted', () => counts.generations.length === 1);
    assert.deepEqual(counts.generations, ['failed']);
    assert.equal(git.generations.length, 0, 'pack-objects never ran');
    assert.equal(cache.bytesHeld(), 0);
    await mkdir(dir);
    const next = leaseOf(await cache.acquire(req));
    assert.equal(next.role, 'miss');
    assert.deepEqual(
      await objectsInPack(await readLease(next), join(root, `index-${n}`)),
      await objectsOf(bare),
    );
    next.release();
    await cache.close();
  });

  it('sweeps entries an earlier process left behind', async () => {
    const { cache, dir } = await openCache(new RecordingGit());
    await cache.close();
    await writeFile(join(dir, '1-half-written.pack'), 'PACK');
    const reopened = await PackCache.open({
      dir,
      maxBytes: 1 << 20,
      ttlMs: 60_000,
      git: new RecordingGit(),
      gitVersion: 'v',
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
    });
    assert.deepEqual(await readdir(dir), []);
    await reopened.close();
  });

  it('bypasses everything when its budget is 0', async () => {
    const { cache } = await openCache(new RecordingGit(), { maxBytes: 0 });
    assert.deepEqual(await cache.acquire(await request()), { bypass: 'disabled' });
    await cache.close();
  });
});

async function readRevList(bare: string): Promise<string[]> {
  const { git } = await import('../../../testing/git.ts');
  return (await git(['rev-list', '--all'], { cwd: bare })).trim().split('\n');
}

async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    total += await stat(join(dir, name)).then(
      (s) => s.size,
      () => 0,
    );
  }
  return total;
}
