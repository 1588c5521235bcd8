import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { makeMirror } from '../../../testing/git-repos.ts';
import { createArchiveStream } from '../../src/archive/archive-create.ts';
import { extractArchive } from '../../src/archive/archive-extract.ts';
import { rawTar, sha256, zstd } from './support/tar-fixtures.ts';

let root: string;
let archive: Buffer;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-extract-verify-'));
  const mirror = await makeMirror(join(root, 'repo'));
  archive = Buffer.concat(await createArchiveStream(mirror).toArray());
});
after(() => rm(root, { recursive: true, force: true }));

async function extract(data: Buffer | Readable, expectedSize: number, expectedSha256: string) {
  const target = join(root, `t${n++}`);
  await mkdir(target);
  const source = Buffer.isBuffer(data) ? Readable.from([data]) : data;
  return extractArchive(source, target, { expectedSize, expectedSha256 });
}

/** One 6 MB file: decompression is mid-entry for most of the stream. */
function largeFileArchive(): Buffer {
  largeArchive ??= zstd(
    rawTar([{ path: 'objects/pack/big.pack', body: randomBytes(3_000_000).toString('hex') }]),
  );
  return largeArchive;
}
let largeArchive: Buffer | undefined;

const isCode = (code: string) => (err: { code?: string }) => err.code === code;

describe('extractArchive verifies what it unpacks', () => {
  it('accepts the archive its manifest describes', async () => {
    const result = await extract(archive, archive.length, sha256(archive));
    assert.ok(result.entries > 10);
  });

  it('rejects a checksum mismatch', async () => {
    const wrong = sha256(Buffer.from('something else'));
    await assert.rejects(extract(archive, archive.length, wrong), /sha256 .* instead of/);
  });

  it('rejects a download shorter than the manifest says (truncated archive)', async () => {
    const cut = archive.subarray(0, Math.floor(archive.length / 2));
    await assert.rejects(extract(cut, archive.length, sha256(archive)), isCode('SNAPSHOT_CORRUPT'));
  });

  it('fails as soon as more bytes arrive than the manifest allows, without reading the rest', async () => {
    let pulled = 0;
    const endless = new Readable({
      read() {
        pulled++;
        this.push(archive);
      },
    });
    await assert.rejects(extract(endless, archive.length - 1, sha256(archive)), /more than the expected/);
    // Stream buffers hold a few chunks; the point is that an endless source is cut off.
    assert.ok(pulled < 20, `read ${pulled} chunks of an endless source`);
  });

  it('rejects truncated zstd even when size and checksum describe the truncated bytes', async () => {
    const cut = archive.subarray(0, archive.length - 7);
    await assert.rejects(extract(cut, cut.length, sha256(cut)), isCode('SNAPSHOT_CORRUPT'));
  });

  it('rejects corrupted zstd data that the manifest vouches for', async () => {
    const bad = Buffer.from(archive);
    for (let i = 100; i < bad.length; i += 97) bad[i]! ^= 0x5a;
    await assert.rejects(extract(bad, bad.length, sha256(bad)), isCode('SNAPSHOT_CORRUPT'));
  });

  it('rejects data that is not zstd at all', async () => {
    const junk = Buffer.from('this is not an archive'.repeat(100));
    await assert.rejects(extract(junk, junk.length, sha256(junk)), isCode('SNAPSHOT_CORRUPT'));
  });

  it('rejects zstd that does not hold a tar', async () => {
    const notTar = zstd(Buffer.from('plain text, not tar\n'.repeat(100)));
    await assert.rejects(extract(notTar, notTar.length, sha256(notTar)), isCode('SNAPSHOT_CORRUPT'));
  });

  it('rejects a tar cut off in the middle of a file body', async () => {
    const tar = rawTar([{ path: 'big', body: 'x'.repeat(5000) }]);
    const cut = zstd(tar.subarray(0, 2048));
    await assert.rejects(extract(cut, cut.length, sha256(cut)), isCode('SNAPSHOT_CORRUPT'));
  });

  it('fails promptly on corruption in the middle of a large file', { timeout: 20_000 }, async () => {
    const bad = Buffer.from(largeFileArchive());
    for (let i = bad.length >> 1; i < (bad.length >> 1) + 2000; i += 7) bad[i]! ^= 0xff;
    const started = Date.now();
    const halves = Readable.from([bad.subarray(0, bad.length >> 2), bad.subarray(bad.length >> 2)]);
    await assert.rejects(extract(halves, bad.length, sha256(bad)), isCode('SNAPSHOT_CORRUPT'));
    assert.ok(Date.now() - started < 4000, 'the worker stopped instead of waiting for the stuck entry');
  });

  it('stops promptly when aborted in the middle of a large file', { timeout: 20_000 }, async () => {
    const data = largeFileArchive();
    const target = join(root, `t${n++}`);
    await mkdir(target);
    const controller = new AbortController();
    const stalled = new Readable({ read() {} });
    stalled.push(data.subarray(0, data.length >> 1));
    const started = Date.now();
    const running = extractArchive(stalled, target, {
      expectedSize: data.length,
      expectedSha256: sha256(data),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 300);
    await assert.rejects(running, isCode('ABORTED'));
    assert.ok(Date.now() - started < 4000, 'abort waited for the stop grace period');
  });

  it('honours an abort signal and reports ABORTED', async () => {
    const target = join(root, `t${n++}`);
    await mkdir(target);
    const controller = new AbortController();
    const slow = new Readable({ read() {} });
    slow.push(archive.subarray(0, 1000));
    const running = extractArchive(slow, target, {
      expectedSize: archive.length,
      expectedSha256: sha256(archive),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(running, isCode('ABORTED'));
  });
});
