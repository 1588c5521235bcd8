import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';

let root: string;
let store: FileSnapshotStore;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-fs-store-'));
  store = new FileSnapshotStore(root);
});
after(() => rm(root, { recursive: true, force: true }));

/** Every file under the store root, temp files included. */
async function filesOnDisk(): Promise<string[]> {
  return (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
    .sort();
}

function failingSource(goodBytes: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= goodBytes) {
        this.destroy(new Error('source broke'));
        return;
      }
      sent += 1024;
      this.push(Buffer.alloc(1024, 1));
    },
  });
}

describe('FileSnapshotStore', () => {
  it('puts, heads, gets, lists and deletes', async () => {
    const info = await store.put('h/o/r/a.bin', Readable.from([Buffer.from('hello '), Buffer.from('world')]));
    assert.equal(info.sizeBytes, 11);
    assert.equal((await store.head('h/o/r/a.bin'))?.sizeBytes, 11);
    assert.equal(Buffer.concat(await (await store.get('h/o/r/a.bin')).toArray()).toString(), 'hello world');
    await store.putBytes('h/o/r/b.json', Buffer.from('{}'));
    assert.deepEqual(
      (await store.list('h/o/')).map((o) => o.key),
      ['h/o/r/a.bin', 'h/o/r/b.json'],
    );
    assert.deepEqual(
      (await store.list('h/o/r/a')).map((o) => o.key),
      ['h/o/r/a.bin'],
    );
    await store.delete('h/o/r/a.bin');
    await store.delete('h/o/r/a.bin');
    assert.equal(await store.head('h/o/r/a.bin'), undefined);
    assert.equal(await store.getBytes('h/o/r/a.bin'), undefined);
    await assert.rejects(
      store.get('h/o/r/a.bin'),
      (err: { code?: string }) => err.code === 'SNAPSHOT_NOT_FOUND',
    );
  });

  it('serves byte ranges with S3 semantics', async () => {
    await store.putBytes('r/range.bin', Buffer.from('0123456789'));
    const read = async (start: number, end: number) =>
      Buffer.concat(await (await store.get('r/range.bin', { range: { start, end } })).toArray()).toString();
    assert.equal(await read(2, 5), '2345');
    assert.equal(await read(8, 100), '89');
    await assert.rejects(read(10, 12), /not satisfiable/);
  });

  it('leaves nothing visible, and no temp file, when the source fails midway', async () => {
    const before = await filesOnDisk();
    await assert.rejects(store.put('fail/x.tar.zst', failingSource(64 * 1024)), /source broke/);
    assert.equal(await store.head('fail/x.tar.zst'), undefined);
    assert.deepEqual(await filesOnDisk(), before);
  });

  it('leaves nothing visible when the put is aborted', async () => {
    const before = await filesOnDisk();
    const controller = new AbortController();
    const endless = new Readable({
      read() {
        setTimeout(() => this.push(Buffer.alloc(1024)), 1);
      },
    });
    setTimeout(() => controller.abort(), 30);
    await assert.rejects(
      store.put('abort/x.tar.zst', endless, { signal: controller.signal }),
      (err: { code?: string }) => err.code === 'ABORTED',
    );
    assert.deepEqual(await filesOnDisk(), before);
  });

  it('keeps the old object intact until a replacing put completes', async () => {
    await store.putBytes('keep/x', Buffer.from('old'));
    await assert.rejects(store.put('keep/x', failingSource(4096)));
    assert.equal((await store.getBytes('keep/x'))?.toString(), 'old');
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

  it('refuses keys that could escape the root or alias another key', async () => {
    for (const key of [
      '../x',
      'a/../../x',
      '/abs',
      'a//b',
      'a/./b',
      'a\\b',
      '',
      'a/.gitmirror-tmp-1',
      'a\u0000b',
    ]) {
      await assert.rejects(store.putBytes(key, Buffer.from('x')), /invalid store key/, key);
      await assert.rejects(store.head(key), /invalid store key/, key);
    }
    await assert.rejects(store.list('../'), /invalid store key/);
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
