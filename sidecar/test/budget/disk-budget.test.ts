import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { git } from '../../../testing/git.ts';
import {
  mountSmallFilesystem,
  type SmallFilesystem,
  smallFilesystemSkipReason,
} from '../../../testing/small-filesystem.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { DiskBudget, type SpaceShortfall } from '../../src/budget/disk-budget.ts';
import type { HeldCandidate } from '../../src/budget/eviction-plan.ts';
import { type HeldMirror, MirrorBytes } from '../../src/budget/mirror-bytes.ts';
import { restoreBytes } from '../../src/budget/size-estimates.ts';
import { filesystemFreeBytes, treeBytes } from '../../src/budget/tree-usage.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';

const MiB = 1024 * 1024;
const exec = promisify(execFile);

/** A bare mirror at `dir` holding one commit with `mib` MiB of incompressible content, packed. */
async function makeMirror(scratch: string, dir: string, mib: number): Promise<void> {
  const work = await tempDir('gitmirror-budget-src-');
  try {
    await git(['init', '--quiet', '--initial-branch=main', work]);
    await writeFile(join(work, 'blob.bin'), randomBytes(mib * MiB));
    await git(['add', 'blob.bin'], { cwd: work });
    await git(['commit', '--quiet', '-m', 'content'], { cwd: work });
    await mkdir(join(dir, '..'), { recursive: true });
    await git(['clone', '--quiet', '--mirror', '--no-local', work, dir], { cwd: scratch });
  } finally {
    await removeDir(work);
  }
}

interface TestMirror extends HeldMirror {
  dir: string;
  removed: boolean;
}

describe('the disk budget on a real small filesystem', { skip: await smallFilesystemSkipReason() }, () => {
  let root: string;
  let fs: SmallFilesystem;
  let mirrors: Map<string, TestMirror>;
  let holder: MirrorBytes;
  let evicted: HeldCandidate[];
  let refused: SpaceShortfall[];

  const budgetOf = (limitBytes?: number) => {
    const budget = new DiskBudget({
      limitBytes,
      dataDir: fs.dir,
      observer: { evicted: (c) => evicted.push(c), refused: (s) => refused.push(s) },
    });
    budget.add(holder);
    return budget;
  };

  const addMirror = async (
    id: string,
    options: { configured: boolean; lastServedAt: number; mib: number },
  ) => {
    const mirror: TestMirror = {
      id,
      dir: join(fs.dir, 'mirrors', `${id}.git`),
      bytes: undefined,
      configured: options.configured,
      lastServedAt: options.lastServedAt,
      busy: false,
      removed: false,
    };
    await makeMirror(root, mirror.dir, options.mib);
    mirrors.set(id, mirror);
    mirror.bytes = await treeBytes(mirror.dir);
    return mirror;
  };

  before(async () => {
    root = await tempDir();
    fs = await mountSmallFilesystem(join(root, 'data'), '64m');
  });

  after(async () => {
    await fs?.unmount();
    await removeDir(root);
  });

  const reset = async () => {
    await removeDir(join(fs.dir, 'mirrors'));
    mirrors = new Map();
    evicted = [];
    refused = [];
    holder = new MirrorBytes({
      mirrors: () => [...mirrors.values()].filter((m) => !m.removed),
      remove: async (id) => {
        const mirror = mirrors.get(id)!;
        mirror.removed = true;
        await removeDir(mirror.dir);
      },
    });
  };

  it('refuses a snapshot larger than the budget before writing a byte, naming the sizes', async () => {
    await reset();
    const budget = budgetOf(16 * MiB);
    const freeBefore = await filesystemFreeBytes(fs.dir);
    const manifest = { sizeBytes: 19 * MiB, unpackedBytes: 20 * MiB, entries: 300 };
    await assert.rejects(
      budget.reserve({ bytes: restoreBytes(manifest), purpose: 'restore of github.com/org/big' }),
      (err) => {
        assert.ok(isGitMirrorError(err, 'INSUFFICIENT_STORAGE'));
        assert.equal(err.status, 507);
        assert.match(
          err.message,
          /^restore of github\.com\/org\/big needs 21\.2 MiB: the data budget is 16 MiB, 0 B held, 0 B reserved for writes under way, 0 B evictable; 5\.17 MiB missing$/,
        );
        return true;
      },
    );
    assert.deepEqual(await readdir(fs.dir), []);
    assert.equal(await filesystemFreeBytes(fs.dir), freeBefore);
    assert.equal(refused.length, 1);
    assert.equal(budget.usage().reservedBytes, 0);
  });

  it('evicts the on-demand mirrors served longest ago to make room for a configured one, and no other', async () => {
    await reset();
    const configured = await addMirror('github.com/org/configured', {
      configured: true,
      lastServedAt: 1,
      mib: 8,
    });
    const recent = await addMirror('github.com/org/served-recently', {
      configured: false,
      lastServedAt: 300,
      mib: 8,
    });
    const oldest = await addMirror('github.com/org/served-first', {
      configured: false,
      lastServedAt: 100,
      mib: 8,
    });
    const middle = await addMirror('github.com/org/served-second', {
      configured: false,
      lastServedAt: 200,
      mib: 8,
    });
    const held = holder.bytesHeld();
    assert.ok(held >= 32 * MiB && held < 34 * MiB, `four 8 MiB mirrors hold ${held} bytes`);
    const budget = budgetOf(40 * MiB);

    const reservation = await budget.reserve({ bytes: 18 * MiB, purpose: 'restore of github.com/org/new' });

    assert.deepEqual(
      evicted.map((e) => e.key),
      [oldest.id, middle.id],
    );
    assert.equal(oldest.removed && middle.removed, true);
    assert.deepEqual((await readdir(join(fs.dir, 'mirrors', 'github.com', 'org'))).sort(), [
      'configured.git',
      'served-recently.git',
    ]);
    assert.ok(!configured.removed && !recent.removed);
    const usage = budget.usage();
    assert.ok(usage.usedBytes + usage.reservedBytes <= 40 * MiB);
    assert.equal(usage.reservedBytes, 18 * MiB);
    reservation.release();
    assert.equal(budget.usage().reservedBytes, 0);
  });

  it('never evicts a configured mirror nor one in use: it refuses instead and evicts nothing', async () => {
    await reset();
    const configured = await addMirror('github.com/org/configured', {
      configured: true,
      lastServedAt: 1,
      mib: 8,
    });
    const busy = await addMirror('github.com/org/being-served', {
      configured: false,
      lastServedAt: 2,
      mib: 8,
    });
    busy.busy = true;
    const idle = await addMirror('github.com/org/idle', { configured: false, lastServedAt: 3, mib: 8 });
    const budget = budgetOf(32 * MiB);

    const outcome = await budget.tryReserve({ bytes: 20 * MiB, purpose: 'clone of github.com/org/other' });

    assert.ok(!('release' in outcome), 'refused');
    assert.equal(outcome.evictableBytes, idle.bytes);
    assert.ok(outcome.missingBytes > 0);
    assert.deepEqual(evicted, []);
    assert.ok(!configured.removed && !busy.removed && !idle.removed);
    assert.equal((await readdir(join(fs.dir, 'mirrors', 'github.com', 'org'))).length, 3);
  });

  it('holds the filesystem to its own size when the budget is larger than the volume', async () => {
    await reset();
    const budget = budgetOf(1024 * MiB);
    const free = await filesystemFreeBytes(fs.dir);
    await assert.rejects(
      budget.reserve({ bytes: free + MiB, purpose: 'restore of github.com/org/huge' }),
      (err) => {
        assert.ok(isGitMirrorError(err, 'INSUFFICIENT_STORAGE'));
        assert.match(err.message, /needs [\d.]+ MiB: the data volume has [\d.]+ MiB free/);
        return true;
      },
    );
  });

  it('never lets two writes count the same free bytes', async () => {
    await reset();
    const budget = budgetOf(undefined);
    const free = await filesystemFreeBytes(fs.dir);
    const third = Math.floor(free / 3);
    const outcomes = await Promise.all(
      [1, 2, 3, 4].map((n) => budget.tryReserve({ bytes: third, purpose: `clone ${n}` })),
    );
    assert.equal(outcomes.filter((o) => 'release' in o).length, 3);
    assert.equal(refused.length, 1);
  });

  it('grows a reservation by evicting, and refuses growth past what eviction can give', async () => {
    await reset();
    const idle = await addMirror('github.com/org/idle', { configured: false, lastServedAt: 5, mib: 8 });
    const budget = budgetOf(24 * MiB);
    const reservation = await budget.reserve({
      bytes: 8 * MiB,
      purpose: 'fetch of github.com/org/configured',
    });
    assert.equal(evicted.length, 0);
    await reservation.grow(20 * MiB);
    assert.deepEqual(
      evicted.map((e) => e.key),
      [idle.id],
    );
    await assert.rejects(reservation.grow(25 * MiB), (err) => isGitMirrorError(err, 'INSUFFICIENT_STORAGE'));
    assert.equal(reservation.bytes, 20 * MiB);
    reservation.release();
  });

  it('measures a directory as du does: allocated blocks', async () => {
    await reset();
    const mirror = await addMirror('github.com/org/measured', { configured: true, lastServedAt: 0, mib: 4 });
    const bytes = await treeBytes(mirror.dir);
    const du = await exec('du', ['-s', '--block-size=1', mirror.dir]);
    assert.equal(bytes, Number(du.stdout.split('\t')[0]));
    assert.ok(bytes > 4 * MiB && bytes < 4.5 * MiB, `${bytes}`);
  });
});
