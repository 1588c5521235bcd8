import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { snapshotStoreContract } from '../../../testing/snapshot-store-contract.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';
import { TEMP_MARKER } from '../../src/store/store-key.ts';

const roots: string[] = [];
after(() => Promise.all(roots.map((root) => rm(root, { recursive: true, force: true }))));

async function newRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'gm-fs-store-'));
  roots.push(root);
  return root;
}

snapshotStoreContract('file', async () => {
  const root = await newRoot();
  return {
    store: new FileSnapshotStore(root),
    // Temp files are the file store's in-progress writes.
    leftovers: async () =>
      (await readdir(root, { recursive: true })).filter((path) => path.includes(TEMP_MARKER)),
  };
});

describe('FileSnapshotStore', () => {
  let root: string;
  let store: FileSnapshotStore;
  before(async () => {
    root = await newRoot();
    store = new FileSnapshotStore(root);
  });

  it('hides temp files from list and sweeps stale ones', async () => {
    await store.putBytes('t/real', Buffer.from('x'));
    const fresh = join(root, 't', '.gitmirror-tmp-fresh');
    const stale = join(root, 't', '.gitmirror-tmp-stale');
    await writeFile(fresh, 'partial');
    await writeFile(stale, 'partial');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, old, old);
    assert.deepEqual(
      (await store.list('t/')).map((o) => o.key),
      ['t/real'],
    );
    assert.deepEqual((await readdir(join(root, 't'))).sort(), ['.gitmirror-tmp-fresh', 'real']);
  });

  it('reports a put blocked by a file where a directory should be as SNAPSHOT_STORE_FAILED', async () => {
    await store.putBytes('blocked', Buffer.from('a file'));
    await assert.rejects(
      store.put('blocked/repo/x.tar.zst', Readable.from([Buffer.from('x')])),
      (err: { code?: string }) => err.code === 'SNAPSHOT_STORE_FAILED',
    );
  });

  it('requires an absolute root', () => {
    assert.throws(() => new FileSnapshotStore('relative/dir'), /absolute/);
  });
});
