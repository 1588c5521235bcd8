import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { git } from '../../../testing/git.ts';
import { commitLfsFiles, lfsEnvironment } from '../../../testing/lfs-client.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { canonicalPointer, parsePointer, pointerBlobId } from '../../src/lfs/oid.ts';
import { lfsObjectKey } from '../../src/store/lfs-objects.ts';

describe('LFS object ids and pointers', () => {
  let root: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    root = await tempDir('gitmirror-lfs-oid-');
    env = await lfsEnvironment(join(root, 'home'));
  });
  after(() => removeDir(root));

  for (const format of ['sha1', 'sha256'] as const) {
    it(`reads the pointers git-lfs writes, and knows their blob ids in a ${format} repository`, async () => {
      const work = join(root, `work-${format}`);
      await git(['init', '--quiet', `--object-format=${format}`, work], { env });
      const ids = await commitLfsFiles(
        work,
        {
          'a.bin': Buffer.from('hello'),
          'dir/b.bin': Buffer.from('x'),
          'big.bin': Buffer.alloc(70_000, 1),
        },
        env,
      );
      for (const [path, id] of Object.entries(ids)) {
        const blob = await git(['cat-file', 'blob', `HEAD:${path}`], { cwd: work, env });
        assert.deepEqual(parsePointer(blob), id);
        assert.equal(blob, canonicalPointer(id));
        const blobId = (await git(['rev-parse', `HEAD:${path}`], { cwd: work, env })).trim();
        assert.equal(pointerBlobId(id, format), blobId);
      }
    });
  }

  it('refuses what is not a pointer', () => {
    const oid = 'a'.repeat(64);
    const good = `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize 12\n`;
    assert.deepEqual(parsePointer(good), { oid, size: 12 });
    assert.deepEqual(parsePointer(good.replace('size 12\n', 'ext-0-foo sha256:00\nsize 12\n')), {
      oid,
      size: 12,
    });
    for (const bad of [
      good.slice(0, -1),
      good.replace('github.com/spec/v1', 'github.com/spec/v2'),
      good.replace('sha256:', 'sha1:'),
      good.replace(oid, oid.toUpperCase()),
      good.replace('size 12', 'size -1'),
      good.replace('size 12', 'size 012'),
      good.replace('size 12', 'size 99999999999999999'),
      good.replace('size 12\n', ''),
      `${good}x y\n`,
      good + 'x'.repeat(1024),
      'hello world\n',
    ])
      assert.equal(parsePointer(bad), undefined, JSON.stringify(bad));
  });

  it('parses back every pointer it writes (property)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[0-9a-f]{64}$/),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        (oid, size) => {
          assert.deepEqual(parsePointer(canonicalPointer({ oid, size })), { oid, size });
        },
      ),
    );
  });

  it('names store keys by the first two hex digits', () => {
    assert.equal(lfsObjectKey('ab'.repeat(32)), `lfs/ab/${'ab'.repeat(32)}`);
  });
});
