import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseRepoId } from '../../../core/repo-id.ts';
import { git } from '../../../testing/git.ts';
import { fsck, headCommit, makeMirror, refsOf } from '../../../testing/git-repos.ts';
import { extractArchive } from '../../src/archive/archive-extract.ts';
import { runProcess } from '../../src/process/child-process.ts';
import { manifestKey } from '../../src/snapshot/layout.ts';
import { publishSnapshot } from '../../src/snapshot/publish.ts';
import { downloadAndExtract } from '../../src/snapshot/restore-download.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';

const repo = parseRepoId('github.com/org/roundtrip');
let root: string;
let mirror: string;
let store: FileSnapshotStore;
let tempParent: string;

async function listTree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-roundtrip-'));
  mirror = await makeMirror(join(root, 'src'));
  // A loose ref whose path needs a pax/ustar long name (> 100 bytes).
  const longRef = `refs/heads/${'deeply/nested/'.repeat(6)}${'x'.repeat(40)}`;
  await git(['update-ref', longRef, 'HEAD'], { cwd: mirror });
  // What a live mirror can hold mid-fetch or mid-repack; none of it may be archived.
  await writeFile(join(mirror, 'packed-refs.lock'), 'junk');
  await writeFile(join(mirror, 'refs', 'heads', 'main.lock'), 'junk');
  await writeFile(join(mirror, 'objects', 'pack', 'multi-pack-index.lock'), 'junk');
  store = new FileSnapshotStore(join(root, 'store'));
  tempParent = join(root, 'tmp');
  await mkdir(tempParent);
});
after(() => rm(root, { recursive: true, force: true }));

describe('snapshot round trip through a file store', () => {
  it('restores a mirror that passes fsck with identical refs and no lock files', async () => {
    const commit = await headCommit(mirror);
    const manifest = await publishSnapshot({
      store,
      repo,
      mirrorDir: mirror,
      commit,
      refsDigest: 'r1',
      retain: 2,
    });
    assert.equal(manifest.commit, commit);
    assert.equal((await store.head(manifest.key))?.sizeBytes, manifest.sizeBytes);

    const restored = await downloadAndExtract({ store, repo, tempParent });
    assert.equal(restored.snapshot.key, manifest.key);
    await fsck(restored.dir);
    assert.equal(await refsOf(restored.dir), await refsOf(mirror));
    assert.equal(await headCommit(restored.dir), commit);
    const files = await listTree(restored.dir);
    assert.deepEqual(
      files.filter((f) => f.endsWith('.lock')),
      [],
    );
    const original = (await listTree(mirror)).filter((f) => !f.endsWith('.lock'));
    assert.deepEqual(files, original);
  });

  it('restores by hand with the zstd and tar command-line tools', async () => {
    const key = JSON.parse((await store.getBytes(manifestKey(repo)))!.toString()).key as string;
    const byHand = join(root, 'by-hand');
    await mkdir(byHand);
    await runProcess('sh', ['-c', 'zstd -dc "$1" | tar -x -C "$2"', 'sh', join(store.root, key), byHand], {
      timeoutMs: 60_000,
    });
    await fsck(byHand);
    assert.equal(await refsOf(byHand), await refsOf(mirror));
  });

  it('accepts an archive made by hand with GNU tar and the zstd CLI', async () => {
    const archive = join(root, 'by-cli.tar.zst');
    await runProcess(
      'sh',
      ['-c', 'tar -C "$1" --exclude="*.lock" -cf - . | zstd -q -19 -o "$2"', 'sh', mirror, archive],
      {
        timeoutMs: 60_000,
      },
    );
    const data = await readFile(archive);
    const target = join(root, 'from-cli');
    await mkdir(target);
    await extractArchive(createReadStream(archive), target, {
      expectedSize: data.length,
      expectedSha256: createHash('sha256').update(data).digest('hex'),
    });
    await fsck(target);
    assert.equal(await refsOf(target), await refsOf(mirror));
  });

  it('refuses to archive a mirror holding a symlink, publishing nothing', async () => {
    const odd = await makeMirror(join(root, 'odd'));
    await symlink('/etc/passwd', join(odd, 'hooks', 'evil'));
    const oddRepo = parseRepoId('github.com/org/odd');
    await assert.rejects(
      publishSnapshot({ store, repo: oddRepo, mirrorDir: odd, commit: await headCommit(odd), retain: 2 }),
      (err: { code?: string }) => err.code === 'SNAPSHOT_UNSAFE_ENTRY',
    );
    assert.deepEqual(await store.list('github.com/org/odd/'), []);
  });
});
