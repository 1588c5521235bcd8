import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, describe, it } from 'node:test';
import type { SnapshotStore } from '../sidecar/src/store/store.ts';

/**
 * The specification every `SnapshotStore` backend meets, written once and run against each:
 * the file store in `npm test` (sidecar/test/store/fs-store.test.ts) and S3 against MinIO in
 * the end-to-end suite (e2e/s3/s3-snapshot-store.test.ts). What only one backend has (temp
 * file sweeping, multipart uploads, parallel ranged reads) is tested in that backend's file.
 */

export interface StoreUnderTest {
  /** A store of its own: empty, and used by nothing else while the specs run. */
  store: SnapshotStore;
  /**
   * What the backend keeps of writes that did not complete and `list` does not show (temp
   * files, open multipart uploads); a failed or aborted put must leave nothing here.
   */
  leftovers(): Promise<string[]>;
}

const KIB = 1024;

/** Registers the contract's specs as one suite; `open` runs once, before them. */
export function snapshotStoreContract(backend: string, open: () => Promise<StoreUnderTest>): void {
  describe(`SnapshotStore contract: ${backend}`, () => {
    let subject: StoreUnderTest;
    before(async () => {
      subject = await open();
    });

    it('puts, heads, gets, lists and deletes', async () => {
      const { store } = subject;
      const info = await store.put(
        'h/o/r/a.bin',
        Readable.from([Buffer.from('hello '), Buffer.from('world')]),
      );
      assert.equal(info.sizeBytes, 11);
      assert.equal((await store.head('h/o/r/a.bin'))?.sizeBytes, 11);
      assert.equal(await text(store.get('h/o/r/a.bin')), 'hello world');
      assert.equal((await store.putBytes('h/o/r/b.json', Buffer.from('{}'))).sizeBytes, 2);
      assert.equal((await store.getBytes('h/o/r/b.json'))?.toString(), '{}');
      assert.deepEqual(await keys(store, 'h/o/'), ['h/o/r/a.bin', 'h/o/r/b.json']);
      assert.deepEqual(await keys(store, 'h/o/r/a'), ['h/o/r/a.bin'], 'a prefix need not end at a /');
      await store.delete('h/o/r/a.bin');
      await store.delete('h/o/r/a.bin');
      assert.equal(await store.head('h/o/r/a.bin'), undefined);
      assert.equal(await store.getBytes('h/o/r/a.bin'), undefined);
      await assert.rejects(store.get('h/o/r/a.bin'), hasCode('SNAPSHOT_NOT_FOUND'));
    });

    it('serves byte ranges with S3 semantics: the end is clipped, a start past the end fails', async () => {
      const { store } = subject;
      await store.putBytes('r/range.bin', Buffer.from('0123456789'));
      const read = (start: number, end: number) => text(store.get('r/range.bin', { range: { start, end } }));
      assert.equal(await read(2, 5), '2345');
      assert.equal(await read(8, 100), '89');
      await assert.rejects(read(10, 12), hasCode('SNAPSHOT_STORE_FAILED'));
    });

    it('leaves nothing visible and nothing behind when the source fails midway', async () => {
      const { store } = subject;
      const listed = await keys(store, '');
      await assert.rejects(store.put('fail/x.tar.zst', failingSource(64 * KIB)), /source broke/);
      assert.equal(await store.head('fail/x.tar.zst'), undefined);
      assert.deepEqual(await keys(store, ''), listed);
      assert.deepEqual(await subject.leftovers(), []);
    });

    it('leaves nothing visible and nothing behind when the put is aborted, and says ABORTED', async () => {
      const { store } = subject;
      const listed = await keys(store, '');
      const controller = new AbortController();
      const endless = new Readable({
        read() {
          setTimeout(() => this.push(Buffer.alloc(KIB)), 1);
        },
      });
      setTimeout(() => controller.abort(), 30);
      await assert.rejects(
        store.put('abort/x.tar.zst', endless, { signal: controller.signal }),
        hasCode('ABORTED'),
      );
      assert.equal(await store.head('abort/x.tar.zst'), undefined);
      assert.deepEqual(await keys(store, ''), listed);
      assert.deepEqual(await subject.leftovers(), []);
    });

    it('keeps the old object intact until a replacing put completes', async () => {
      const { store } = subject;
      await store.putBytes('keep/x', Buffer.from('old'));
      await assert.rejects(store.put('keep/x', failingSource(4 * KIB)));
      assert.equal((await store.getBytes('keep/x'))?.toString(), 'old');
      await store.put('keep/x', Readable.from([Buffer.from('new')]));
      assert.equal((await store.getBytes('keep/x'))?.toString(), 'new');
    });

    it('takes two puts of one key at once (two replicas copying one LFS object): both succeed, one whole object stays', async () => {
      const { store } = subject;
      const content = Buffer.alloc(256 * KIB, 7);
      const chunks = (n: number) =>
        Readable.from(
          Array.from({ length: n }, (_, i) => content.subarray(i * KIB * 16, (i + 1) * KIB * 16)),
        );
      const infos = await Promise.all([
        store.put('lfs/07/same', chunks(16)),
        store.put('lfs/07/same', chunks(16)),
      ]);
      assert.deepEqual(
        infos.map((i) => i.sizeBytes),
        [content.length, content.length],
      );
      assert.ok((await buffer(store.get('lfs/07/same'))).equals(content));
      assert.deepEqual(await keys(store, 'lfs/'), ['lfs/07/same']);
      assert.deepEqual(await subject.leftovers(), []);
    });

    it('refuses keys that could escape the store or alias another key', async () => {
      const { store } = subject;
      for (const key of [
        '../x',
        'a/../../x',
        '/abs',
        'a//b',
        'a/./b',
        'a\\b',
        '',
        'a/.gitmirror-tmp-1',
        'a\0b',
      ]) {
        await assert.rejects(store.putBytes(key, Buffer.from('x')), /invalid store key/, key);
        await assert.rejects(store.head(key), /invalid store key/, key);
      }
      await assert.rejects(store.list('../'), /invalid store key/);
    });
  });
}

async function buffer(body: Promise<Readable>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function text(body: Promise<Readable>): Promise<string> {
  return Buffer.concat(await (await body).toArray()).toString();
}

async function keys(store: SnapshotStore, prefix: string): Promise<string[]> {
  return (await store.list(prefix)).map((o) => o.key).sort();
}

function hasCode(code: string): (err: { code?: string }) => boolean {
  return (err) => err.code === code;
}

/** 1 KiB chunks until `goodBytes`, then an error. */
function failingSource(goodBytes: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= goodBytes) {
        this.destroy(new Error('source broke'));
        return;
      }
      sent += KIB;
      this.push(Buffer.alloc(KIB, 1));
    },
  });
}
