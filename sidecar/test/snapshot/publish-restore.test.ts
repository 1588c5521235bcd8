import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseRepoId } from '../../../core/repo-id.ts';
import { git } from '../../../testing/git.ts';
import { fsck, headCommit, makeMirror } from '../../../testing/git-repos.ts';
import { archiveKey, manifestKey, parseArchiveKey, repoPrefix } from '../../src/snapshot/layout.ts';
import { readManifest } from '../../src/snapshot/manifest.ts';
import { publishSnapshot, shouldSkip } from '../../src/snapshot/publish.ts';
import { downloadAndExtract } from '../../src/snapshot/restore-download.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';

const HOUR = 60 * 60 * 1000;
let root: string;
let mirror: string;
let tempParent: string;
let clock = Date.parse('2026-11-24T00:00:00Z');
const now = () => new Date(clock);

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-publish-'));
  mirror = await makeMirror(join(root, 'src'));
  tempParent = join(root, 'tmp');
  await mkdir(tempParent);
});
after(() => rm(root, { recursive: true, force: true }));

function freshStore(name: string): FileSnapshotStore {
  return new FileSnapshotStore(join(root, name));
}

async function archivesOf(store: FileSnapshotStore, repo = parseRepoId('github.com/org/repo')) {
  return (await store.list(repoPrefix(repo))).map((o) => o.key).filter((k) => k.endsWith('.tar.zst'));
}

async function publishAt(store: FileSnapshotStore, retain: number, refsDigest = `r${clock}`) {
  clock += HOUR;
  const repo = parseRepoId('github.com/org/repo');
  return publishSnapshot({
    store,
    repo,
    mirrorDir: mirror,
    commit: await headCommit(mirror),
    refsDigest,
    retain,
    now,
  });
}

const isCode = (code: string) => (err: { code?: string }) => err.code === code;

describe('publishSnapshot', () => {
  it('writes the manifest last, listing earlier archives, and prunes to `retain`', async () => {
    const store = freshStore('s-prune');
    const published = [];
    for (let i = 0; i < 5; i++) published.push(await publishAt(store, 3));
    const latest = published[4]!;
    assert.deepEqual(
      latest.previous?.map((p) => p.key),
      [published[3]!.key, published[2]!.key],
    );
    assert.deepEqual(await archivesOf(store), [published[2]!.key, published[3]!.key, latest.key]);
    assert.deepEqual(await readManifest(store, parseRepoId('github.com/org/repo')), latest);
  });

  it('with retain 2 keeps exactly the latest and the one before it', async () => {
    const store = freshStore('s-retain2');
    const a = await publishAt(store, 2);
    const b = await publishAt(store, 2);
    const c = await publishAt(store, 2);
    assert.deepEqual(await archivesOf(store), [b.key, c.key]);
    assert.equal(c.previous?.[0]?.key, b.key);
    assert.equal(await store.head(a.key), undefined);
    await assert.rejects(publishAt(store, 1), isCode('CONFIG_INVALID'));
  });

  it('deletes unreferenced archives only after the grace period, and never touches other repos', async () => {
    const store = freshStore('s-orphans');
    const repo = parseRepoId('github.com/org/repo');
    const commit = await headCommit(mirror);
    await publishAt(store, 2);
    const orphans = {
      old: archiveKey(repo, new Date(clock - 3 * HOUR), commit),
      fresh: archiveKey(repo, new Date(clock + HOUR - 60_000), commit),
      nested: archiveKey(parseRepoId('github.com/org/repo/sub'), new Date(clock - 10 * HOUR), commit),
    };
    for (const key of Object.values(orphans)) {
      await store.putBytes(key, Buffer.from('partial'));
      const written = parseArchiveKey(parseRepoId(key.split('/').slice(0, -1).join('/')), key)!.createdAt;
      await utimes(join(store.root, key), written, written);
    }
    const latest = await publishAt(store, 2);
    const keys = await archivesOf(store);
    assert.ok(!keys.includes(orphans.old), 'an orphan older than the grace period is removed');
    assert.ok(keys.includes(orphans.fresh), 'a fresh orphan is kept: it may be another writer in progress');
    assert.ok(keys.includes(latest.key) && keys.includes(latest.previous![0]!.key));
    assert.ok(await store.head(orphans.nested), 'a nested repo under the same prefix is left alone');
  });

  it('leaves no manifest and no visible archive when archiving fails or is aborted', async () => {
    const store = freshStore('s-fail');
    const repo = parseRepoId('github.com/org/repo');
    const commit = await headCommit(mirror);
    await assert.rejects(
      publishSnapshot({ store, repo, mirrorDir: join(root, 'missing'), commit, retain: 2 }),
      isCode('PROCESS_FAILED'),
    );
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      publishSnapshot({ store, repo, mirrorDir: mirror, commit, retain: 2, signal: controller.signal }),
      isCode('ABORTED'),
    );
    assert.deepEqual(await store.list(''), []);
    assert.deepEqual(
      (await readdir(store.root, { recursive: true })).filter(
        (f) => String(f).endsWith('.tar.zst') || String(f).includes('tmp'),
      ),
      [],
    );
  });

  it('keeps the previous manifest in force when a later publish fails', async () => {
    const store = freshStore('s-keep');
    const good = await publishAt(store, 2);
    await assert.rejects(
      publishSnapshot({
        store,
        repo: parseRepoId('github.com/org/repo'),
        mirrorDir: join(root, 'missing'),
        commit: good.commit,
        retain: 2,
      }),
    );
    assert.deepEqual(await readManifest(store, parseRepoId('github.com/org/repo')), good);
  });

  it('skips only when refs are unchanged and the archive still exists', async () => {
    const store = freshStore('s-skip');
    const m = await publishAt(store, 2, 'digest-1');
    assert.equal(await shouldSkip(store, m, 'digest-1'), true);
    assert.equal(await shouldSkip(store, m, 'digest-2'), false);
    assert.equal(await shouldSkip(store, undefined, 'digest-1'), false);
    await store.delete(m.key);
    assert.equal(await shouldSkip(store, m, 'digest-1'), false);
  });
});

describe('downloadAndExtract', () => {
  it('restores the latest, or an older archive the manifest vouches for', async () => {
    const store = freshStore('r-keys');
    const repo = parseRepoId('github.com/org/repo');
    const first = await publishAt(store, 3);
    await git(['update-ref', 'refs/heads/extra', 'HEAD'], { cwd: mirror });
    const second = await publishAt(store, 3);
    const latest = await downloadAndExtract({ store, repo, tempParent });
    assert.equal(latest.snapshot.key, second.key);
    assert.match(await git(['show-ref'], { cwd: latest.dir }), /refs\/heads\/extra/);
    const older = await downloadAndExtract({ store, repo, tempParent, key: first.key });
    assert.equal(older.snapshot.key, first.key);
    await fsck(older.dir);
    assert.doesNotMatch(await git(['show-ref'], { cwd: older.dir }), /refs\/heads\/extra/);
    await rm(latest.dir, { recursive: true });
    await rm(older.dir, { recursive: true });
  });

  it('fails with SNAPSHOT_NOT_FOUND, leaving no temp dir, when there is nothing trustworthy', async () => {
    const store = freshStore('r-missing');
    const repo = parseRepoId('github.com/org/repo');
    await assert.rejects(downloadAndExtract({ store, repo, tempParent }), /no snapshot has been published/);
    const m = await publishAt(store, 2);
    const unvouched = archiveKey(repo, new Date(clock + HOUR), m.commit);
    await store.put(unvouched, await store.get(m.key));
    await assert.rejects(
      downloadAndExtract({ store, repo, tempParent, key: unvouched }),
      /not named by its manifest/,
    );
    await store.delete(m.key);
    await assert.rejects(
      downloadAndExtract({ store, repo, tempParent }),
      (err: { code?: string; message: string }) =>
        err.code === 'SNAPSHOT_NOT_FOUND' && err.message.includes('does not have it'),
    );
    assert.deepEqual(await readdir(tempParent), []);
  });

  it('removes the temp dir when the archive does not match its manifest', async () => {
    const store = freshStore('r-corrupt');
    const repo = parseRepoId('github.com/org/repo');
    const m = await publishAt(store, 2);
    await store.putBytes(m.key, Buffer.concat([(await store.getBytes(m.key))!, Buffer.from('extra')]));
    await assert.rejects(downloadAndExtract({ store, repo, tempParent }), isCode('SNAPSHOT_CORRUPT'));
    await store.putBytes(manifestKey(repo), Buffer.from('{"format":"other"}'));
    await assert.rejects(downloadAndExtract({ store, repo, tempParent }), isCode('SNAPSHOT_CORRUPT'));
    assert.deepEqual(await readdir(tempParent), []);
  });
});
