import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { parseRepoId } from '../../core/repo-id.ts';
import { manifestKey, repoPrefix } from '../../sidecar/src/snapshot/layout.ts';
import { publishSnapshot } from '../../sidecar/src/snapshot/publish.ts';
import { downloadAndExtract } from '../../sidecar/src/snapshot/restore-download.ts';
import { S3SnapshotStore, type S3StoreOptions } from '../../sidecar/src/store/s3-store.ts';
import { openSnapshotStore } from '../../sidecar/src/store/store-url.ts';
import { assertArchiveMatches } from '../../testing/archive-integrity.ts';
import { fsck, headCommit, makeIncompressibleRepo, makeMirror, refsOf } from '../../testing/git-repos.ts';
import { type S3Server, startS3Server } from '../../testing/s3-server.ts';
import { snapshotStoreContract } from '../../testing/snapshot-store-contract.ts';
import { waitFor } from '../../testing/wait.ts';

const MIB = 1024 * 1024;
const BUCKET = 'snapshots';
const repo = parseRepoId('github.com/e2e/big');
let server: S3Server;
let root: string;
let bigMirror: string;
let tempParent: string;

/** A store over the test server; part size and parallel-read settings scaled down to the test data. */
function s3Store(options: Partial<S3StoreOptions> = {}): S3SnapshotStore {
  return new S3SnapshotStore({
    bucket: BUCKET,
    prefix: 'e2e',
    forcePathStyle: true,
    endpoint: server.endpoint,
    partSize: 5 * MIB,
    parallelThreshold: 8 * MIB,
    parallelChunkSize: 5 * MIB,
    ...options,
  });
}

async function openMultipartUploads(): Promise<number> {
  const out = await server.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
  return out.Uploads?.length ?? 0;
}

function breakingSource(goodBytes: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= goodBytes) return this.destroy(new Error('source broke midway'));
      sent += MIB;
      this.push(randomBytes(MIB));
    },
  });
}

before(async () => {
  server = await startS3Server();
  await server.createBucket(BUCKET);
  // The store reads credentials and region the standard way, from the environment.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: server.region,
  });
  root = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-s3-'));
  tempParent = join(root, 'tmp');
  await mkdir(tempParent);
  bigMirror = await makeIncompressibleRepo(join(root, 'big.git'), 40, 512 * 1024);
});

after(async () => {
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

snapshotStoreContract('S3 (MinIO)', async () => ({
  store: s3Store({ prefix: 'contract' }),
  leftovers: async () => {
    const out = await server.client.send(
      new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'contract/' }),
    );
    return (out.Uploads ?? []).map((u) => `${u.Key} (multipart upload ${u.UploadId})`);
  },
}));

describe('S3 snapshot store against a real S3 server', () => {
  it('reads AWS_ENDPOINT_URL_S3 and path style from the store URL', async () => {
    process.env.AWS_ENDPOINT_URL_S3 = server.endpoint;
    try {
      const store = await openSnapshotStore(`s3://${BUCKET}/via-env?forcePathStyle=true`, { dataDir: root });
      await store.putBytes('a/b.json', Buffer.from('{"ok":true}'));
      assert.equal((await store.getBytes('a/b.json'))?.toString(), '{"ok":true}');
      const direct = await server.client.send(
        new HeadObjectCommand({ Bucket: BUCKET, Key: 'via-env/a/b.json' }),
      );
      assert.equal(direct.ContentLength, 11);
    } finally {
      delete process.env.AWS_ENDPOINT_URL_S3;
    }
  });

  it('publishes a ~20 MiB archive as a multipart upload and restores it with parallel ranged reads', async () => {
    const store = s3Store();
    const manifest = await publishSnapshot({
      store,
      repo,
      mirrorDir: bigMirror,
      commit: await headCommit(bigMirror),
      retain: 2,
    });
    assert.ok(manifest.sizeBytes > 18 * MIB, `archive is ${manifest.sizeBytes} bytes`);
    const head = await store.head(manifest.key);
    // S3 (and MinIO) mark multipart objects with an ETag of "<md5>-<part count>".
    assert.equal(head?.etag, `"${head?.etag?.slice(1, 33)}-${Math.ceil(manifest.sizeBytes / (5 * MIB))}"`);

    const restored = await downloadAndExtract({ store, repo, tempParent });
    await fsck(restored.dir);
    assert.equal(await refsOf(restored.dir), await refsOf(bigMirror));
    await rm(restored.dir, { recursive: true });
  });

  it('serves ranges and a parallel whole-object read identical to the object', async () => {
    const store = s3Store({ parallelConcurrency: 3 });
    const data = randomBytes(23 * MIB + 12345);
    await store.put('ranges/object.bin', Readable.from([data]));
    const info = (await store.head('ranges/object.bin'))!;
    const parallel = Buffer.concat(await store.getParallel('ranges/object.bin', info).toArray());
    assert.ok(parallel.equals(data), 'parallel read');
    const whole = Buffer.concat(await (await store.get('ranges/object.bin')).toArray());
    assert.ok(whole.equals(data), 'get() of a large object');
    const slice = await store.get('ranges/object.bin', { range: { start: 5 * MIB - 7, end: 6 * MIB } });
    assert.ok(Buffer.concat(await slice.toArray()).equals(data.subarray(5 * MIB - 7, 6 * MIB + 1)));
  });

  it('fails a parallel read whose object is replaced midway (ETag pinned)', async () => {
    const store = s3Store({ parallelConcurrency: 1 });
    await store.put('pinned/object.bin', Readable.from([randomBytes(30 * MIB)]));
    const info = (await store.head('pinned/object.bin'))!;
    const stream = store.getParallel('pinned/object.bin', info);
    const first = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
    stream.pause();
    assert.equal(first.length, 5 * MIB);
    await store.put('pinned/object.bin', Readable.from([randomBytes(30 * MIB)]));
    stream.resume();
    await assert.rejects(stream.toArray(), /changed during the download/);
  });

  it('leaves no object and no open multipart upload when the source fails midway', async () => {
    const store = s3Store();
    await assert.rejects(
      store.put('broken/archive.tar.zst', breakingSource(12 * MIB)),
      /source broke midway/,
    );
    assert.equal(await store.head('broken/archive.tar.zst'), undefined);
    assert.equal(await openMultipartUploads(), 0);
  });

  it('leaves no manifest and no archive when a publish is aborted midway', async () => {
    const store = s3Store();
    const abortedRepo = parseRepoId('github.com/e2e/aborted');
    const controller = new AbortController();
    const publishing = publishSnapshot({
      store,
      repo: abortedRepo,
      mirrorDir: bigMirror,
      commit: await headCommit(bigMirror),
      retain: 2,
      signal: controller.signal,
    });
    // Abort once the upload is under way (the first part has been sent), or after 30 s anyway.
    await waitFor('the first part uploaded', async () => (await openMultipartUploads()) > 0, {
      intervalMs: 20,
    }).catch(() => {});
    controller.abort();
    await assert.rejects(publishing, (err: { code?: string }) => err.code === 'ABORTED');
    assert.deepEqual(await store.list(repoPrefix(abortedRepo)), []);
    assert.equal(await store.head(manifestKey(abortedRepo)), undefined);
    assert.equal(await openMultipartUploads(), 0);
  });

  it('prunes old archives on S3, keeping the latest and the one before it', async () => {
    const store = s3Store();
    const small = await makeMirror(join(root, 'small'));
    const smallRepo = parseRepoId('github.com/e2e/small');
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const published = [];
    for (let i = 0; i < 4; i++) {
      clock += 3_600_000;
      const now = new Date(clock);
      published.push(
        await publishSnapshot({
          store,
          repo: smallRepo,
          mirrorDir: small,
          commit: await headCommit(small),
          retain: 2,
          now: () => now,
        }),
      );
    }
    const keys = (await store.list(repoPrefix(smallRepo))).map((o) => o.key);
    assert.deepEqual(keys.sort(), [published[2]!.key, published[3]!.key, manifestKey(smallRepo)].sort());
    const restored = await downloadAndExtract({ store, repo: smallRepo, tempParent, key: published[2]!.key });
    await fsck(restored.dir);
    await rm(restored.dir, { recursive: true });
    assert.deepEqual(await readdir(tempParent), []);
  });

  it('reports failures with typed errors and no credentials', async () => {
    const wrongSecret = `wrong-${randomBytes(8).toString('hex')}`;
    const store = new S3SnapshotStore({
      bucket: BUCKET,
      forcePathStyle: true,
      endpoint: server.endpoint,
      maxAttempts: 1,
    });
    process.env.AWS_SECRET_ACCESS_KEY = wrongSecret;
    try {
      const err = await store.putBytes('x/y', Buffer.from('z')).then(
        () => undefined,
        (e: { code?: string; message: string }) => e,
      );
      assert.equal(err?.code, 'SNAPSHOT_STORE_FAILED');
      assert.ok(
        !err?.message.includes(wrongSecret) && !err?.message.includes(server.accessKeyId),
        err?.message,
      );
    } finally {
      process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey;
    }
    const missing = s3Store({ bucket: 'no-such-bucket' });
    await assert.rejects(
      missing.putBytes('x', Buffer.from('y')),
      (e: { code?: string }) => e.code === 'SNAPSHOT_STORE_FAILED',
    );
  });

  it('hashes what it stored: the object in S3 is the archive its manifest vouches for', async () => {
    const store = s3Store();
    const manifest = JSON.parse((await store.getBytes(manifestKey(repo)))!.toString());
    const body = Buffer.concat(await (await store.get(manifest.key)).toArray());
    assertArchiveMatches(body, manifest);
  });
});
