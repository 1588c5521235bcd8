import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';
import { S3SnapshotStore } from '../../src/store/s3-store.ts';
import { openSnapshotStore } from '../../src/store/store-url.ts';

const opts = { dataDir: '/var/lib/gitmirror' };

describe('openSnapshotStore', () => {
  it('defaults to file://$DATA_DIR/snapshots', async () => {
    for (const url of [undefined, '', '  ']) {
      const store = await openSnapshotStore(url, opts);
      assert.ok(store instanceof FileSnapshotStore);
      assert.equal(store.description, 'file:///var/lib/gitmirror/snapshots');
    }
  });

  it('opens file:///abs/path', async () => {
    const store = await openSnapshotStore('file:///srv/snaps', opts);
    assert.ok(store instanceof FileSnapshotStore);
    assert.equal(store.root, '/srv/snaps');
  });

  it('opens s3://bucket/prefix with path style', async () => {
    const store = await openSnapshotStore(
      's3://my-bucket/team/gitmirror/?forcePathStyle=true&partSizeMiB=8',
      opts,
    );
    assert.ok(store instanceof S3SnapshotStore);
    assert.equal(store.description, 's3://my-bucket/team/gitmirror');
    assert.equal(store.client.config.forcePathStyle, true);
  });

  it('opens s3://bucket without a prefix', async () => {
    assert.equal((await openSnapshotStore('s3://bucket-1', opts)).description, 's3://bucket-1/');
  });

  it('refuses everything else with CONFIG_INVALID and no credentials in the message', async () => {
    const bad = [
      'http://example.com/x',
      'file://host/path',
      'file:///x?y=1',
      's3://UPPER/x',
      's3://bk/x',
      's3://bkt/x?unknown=1',
      's3://bkt/x?forcePathStyle=yes',
      's3://bkt/x?partSizeMiB=1',
      's3://bkt/a/%2e%2e/c',
      's3://bkt/a//c',
      's3://AKIAEXAMPLE:s3cr3t@bucket/x',
      'not a url',
    ];
    for (const url of bad) {
      await assert.rejects(
        openSnapshotStore(url, opts),
        (err: { code?: string; message: string }) =>
          err.code === 'CONFIG_INVALID' && !err.message.includes('s3cr3t'),
        url,
      );
    }
  });
});
