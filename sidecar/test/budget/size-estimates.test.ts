import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { git } from '../../../testing/git.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { readPackDir } from '../../src/budget/pack-stats.ts';
import {
  COMPRESSED_ONLY_FACTOR,
  cloneBytes,
  geometricRollup,
  repackTempBytes,
  restoreBytes,
  UNKNOWN_WRITE_BYTES,
} from '../../src/budget/size-estimates.ts';
import { treeBytes } from '../../src/budget/tree-usage.ts';

const exec = promisify(execFile);

/** Commits `objects - 2` new files (blobs, plus one tree and one commit) and packs them into a pack of their own. */
async function addPack(work: string, objects: number, tag: string): Promise<void> {
  for (let i = 0; i < objects - 2; i++) await writeFile(join(work, `${tag}-${i}.txt`), `${tag} ${i}\n`);
  await git(['add', '.'], { cwd: work });
  await git(['commit', '--quiet', '-m', tag], { cwd: work });
  await git(['repack', '-d', '-q'], { cwd: work });
}

async function packNames(repo: string): Promise<string[]> {
  return (await readdir(join(repo, '.git', 'objects', 'pack')))
    .filter((n) => n.endsWith('.pack'))
    .map((n) => n.slice(0, -'.pack'.length))
    .sort();
}

describe('what a geometric repack rewrites, predicted and then done by git', () => {
  let root: string;
  before(async () => {
    root = await tempDir();
  });
  after(() => removeDir(root));

  const cases: { name: string; packs: number[]; keep?: number; rolled: number }[] = [
    { name: 'packs that already grow geometrically stay', packs: [50, 20, 8, 3], rolled: 0 },
    { name: 'small packs roll up below a large one', packs: [40, 3, 3, 3, 3], rolled: 4 },
    { name: 'a roll-up that outgrows the next pack takes it too', packs: [100, 11, 5, 3, 3], rolled: 4 },
    { name: 'a kept pack is never rolled up', packs: [60, 3, 3, 3], keep: 3, rolled: 2 },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const work = join(root, c.name.replaceAll(' ', '-'));
      await git(['init', '--quiet', '--initial-branch=main', work]);
      // A packed root commit first, so every later pack holds exactly the objects its commit added.
      for (const [i, objects] of c.packs.entries()) await addPack(work, objects, `p${i}`);
      if (c.keep !== undefined) {
        const stats = await readPackDir(join(work, '.git'));
        const kept = stats.packs.find((p) => p.objects === c.keep)!;
        await writeFile(join(work, '.git', 'objects', 'pack', `${kept.name}.keep`), '');
      }
      const stats = await readPackDir(join(work, '.git'));
      assert.deepEqual(
        stats.packs.map((p) => p.objects).sort((a, b) => a - b),
        [...c.packs].sort((a, b) => a - b),
      );
      const rolled = geometricRollup(stats.packs);
      assert.equal(rolled.length, c.rolled);
      const before = await packNames(work);

      await git(['repack', '-d', '-q', '--geometric=2', '--write-midx', '--write-bitmap-index'], {
        cwd: work,
      });

      const after = await packNames(work);
      const survivors = before.filter((name) => after.includes(name));
      const predictedSurvivors = before.filter((name) => !rolled.some((p) => p.name === name));
      assert.deepEqual(survivors, predictedSurvivors);
      if (rolled.length > 0) assert.equal(after.length, predictedSurvivors.length + 1);
      assert.ok(
        repackTempBytes({ ...stats, commitGraphBytes: 0 }) >= rolled.reduce((sum, p) => sum + p.bytes, 0),
      );
    });
  }
});

describe('restore and clone size estimates', () => {
  let root: string;
  let mirror: string;
  before(async () => {
    root = await tempDir();
    const work = join(root, 'work');
    await git(['init', '--quiet', '--initial-branch=main', work]);
    await writeFile(join(work, 'data.bin'), randomBytes(3 * 1024 * 1024));
    await git(['add', '.'], { cwd: work });
    await git(['commit', '--quiet', '-m', 'data'], { cwd: work });
    // Many loose refs: small files that each take a whole block on disk but 1 KiB in a tar.
    for (let i = 0; i < 300; i++) await git(['branch', `b${i}`], { cwd: work });
    mirror = join(root, 'mirror.git');
    await git(['clone', '--quiet', '--mirror', '--no-local', work, mirror]);
    for (let i = 0; i < 300; i++) await git(['update-ref', `refs/heads/loose-${i}`, 'main'], { cwd: mirror });
  });
  after(() => removeDir(root));

  /** The archive of the mirror as manifests describe it, and the bytes it takes once extracted. */
  async function archiveAndExtract(name: string) {
    const tarPath = join(root, `${name}.tar`);
    await exec('tar', ['-cf', tarPath, '-C', mirror, '.']);
    const entries = (await exec('tar', ['-tf', tarPath])).stdout.trim().split('\n').length;
    await exec('zstd', ['-q', '-3', '-f', tarPath, '-o', `${tarPath}.zst`]);
    const extracted = join(root, `${name}-extracted`);
    await mkdir(extracted);
    await exec('tar', ['-xf', tarPath, '-C', extracted]);
    return {
      archive: {
        sizeBytes: (await stat(`${tarPath}.zst`)).size,
        unpackedBytes: (await stat(tarPath)).size,
        entries,
      },
      onDisk: await treeBytes(extracted),
    };
  }

  it('bounds the extracted size of an archive from its uncompressed size and entry count', async () => {
    const { archive, onDisk } = await archiveAndExtract('loose-refs');
    assert.ok(restoreBytes(archive) >= onDisk, `estimate ${restoreBytes(archive)} >= ${onDisk} on disk`);
    // 600 loose refs take a block each on disk but compress to almost nothing: the compressed
    // size alone cannot bound this one, which is why new manifests carry the two numbers.
    assert.ok(restoreBytes({ sizeBytes: archive.sizeBytes }) < onDisk);
  });

  it('bounds a mirror of packs from the compressed size alone (manifests of earlier versions)', async () => {
    await git(['pack-refs', '--all', '--prune'], { cwd: mirror });
    const { archive, onDisk } = await archiveAndExtract('packed-refs');
    assert.ok(restoreBytes({ sizeBytes: archive.sizeBytes }) >= onDisk);
    assert.equal(restoreBytes({ sizeBytes: 1000 }), Math.ceil(1000 * COMPRESSED_ONLY_FACTOR));
  });

  it('sizes a clone from a snapshot, else the mirror it replaces, else starts small and grows', () => {
    const snapshot = { sizeBytes: 100, unpackedBytes: 200, entries: 2 };
    assert.deepEqual(cloneBytes({ snapshot, mirrorBytes: 5 }), {
      bytes: restoreBytes(snapshot),
      basis: 'snapshot',
    });
    assert.deepEqual(cloneBytes({ mirrorBytes: 5000 }), { bytes: 5000, basis: 'mirror' });
    assert.deepEqual(cloneBytes({}), { bytes: UNKNOWN_WRITE_BYTES, basis: 'unknown' });
  });
});
