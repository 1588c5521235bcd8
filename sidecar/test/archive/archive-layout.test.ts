import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { createArchiveStream, writeArchiveFile } from '../../src/archive/archive-create.ts';
import { type ArchiveCheck, type ArchiveSource, restoreArchive } from '../../src/archive/archive-extract.ts';
import { PIECE_BYTES, placePieces } from '../../src/archive/archive-layout.ts';
import {
  RawFrameReader,
  rawFrame,
  rawFrameBytes,
  rawPayloadBytes,
  skippableFrame,
  skippableFrameData,
} from '../../src/archive/zstd-frames.ts';
import { runProcess } from '../../src/process/child-process.ts';
import { sha256, zstd } from './support/tar-fixtures.ts';

/**
 * Archive layout 2 (`archive-layout.ts`): stored files in raw zstd frames, compressed
 * entries, an index in a skippable frame. What a user relies on: the archive restores the
 * same tree through our reader (from a file or a stream) and through `zstd -dc | tar -x`,
 * and any byte that differs from what the manifest vouches for fails the restore.
 */

let root: string;
let mirror: string;
let archivePath: string;
let archive: Buffer;
let check: Extract<ArchiveCheck, { layout: 2 }>;
let n = 0;

/** A mirror-shaped tree: a pack larger than a piece (stored, in several pieces) and small files. */
async function makeTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'objects', 'pack'), { recursive: true });
  await mkdir(join(dir, 'refs', 'heads'), { recursive: true });
  // Not a multiple of 512 or of a piece: padding and a short last piece.
  await writeFile(join(dir, 'objects', 'pack', 'pack-a.pack'), randomBytes(PIECE_BYTES * 2 + 12_345));
  await writeFile(join(dir, 'objects', 'pack', 'pack-a.idx'), randomBytes(1024 * 1024 + 7));
  // Small, or not a git name: compressed with the entries.
  await writeFile(join(dir, 'objects', 'pack', 'pack-b.pack'), randomBytes(4000));
  await writeFile(join(dir, 'big.log'), Buffer.alloc(3 * 1024 * 1024, 'log line\n'));
  await writeFile(join(dir, 'HEAD'), 'ref: refs/heads/main\n');
  await writeFile(join(dir, 'refs', 'heads', 'main'), `${'a'.repeat(40)}\n`);
}

async function listTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(dir, { recursive: true })).map(String).sort()) {
    const info = await stat(join(dir, name));
    out.set(name, info.isDirectory() ? 'dir' : sha256(await readFile(join(dir, name))));
  }
  return out;
}

async function bytesOf(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir, { recursive: true })) {
    const info = await stat(join(dir, String(name)));
    if (info.isFile()) total += info.size;
  }
  return total;
}

function checkOf(data: Buffer, indexBytes: number): Extract<ArchiveCheck, { layout: 2 }> {
  return {
    layout: 2,
    sizeBytes: data.length,
    sha256: sha256(data.subarray(data.length - indexBytes)),
    indexBytes,
  };
}

/** The archive as a store without local files serves it: ranged streams. */
function streamSource(data: Buffer): ArchiveSource {
  return { read: async ({ start, end }) => Readable.from([data.subarray(start, end + 1)]) };
}

async function restoreInto(source: ArchiveSource, archiveCheck: ArchiveCheck) {
  const target = join(root, `t${n++}`);
  await mkdir(target);
  const result = await restoreArchive(source, target, archiveCheck);
  return { target, result };
}

/** The index's JSON, to be edited as an attacker would, and the archive rebuilt around it. */
function withIndex(edit: (index: { pieces: Record<string, unknown>[] }) => void): {
  data: Buffer;
  check: ArchiveCheck;
} {
  const index = JSON.parse(skippableFrameData(archive.subarray(archive.length - indexBytesOf()))!.toString());
  edit(index);
  const frame = skippableFrame(Buffer.from(JSON.stringify(index)));
  const data = Buffer.concat([archive.subarray(0, archive.length - indexBytesOf()), frame]);
  return { data, check: checkOf(data, frame.length) };
}

function indexBytesOf(): number {
  return check.indexBytes;
}

const isCode = (code: string) => (err: { code?: string }) => err.code === code;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-layout-'));
  mirror = join(root, 'mirror');
  await makeTree(mirror);
  archivePath = join(root, 'archive.tar.zst');
  const digest = await writeArchiveFile(mirror, archivePath);
  archive = await readFile(archivePath);
  assert.equal(digest.sizeBytes, archive.length);
  check = checkOf(archive, digest.indexBytes);
  assert.equal(digest.sha256, check.sha256);
});
after(() => rm(root, { recursive: true, force: true }));

describe('zstd frames written by hand', () => {
  it('decode with the zstd CLI: raw frames give back their bytes, the index frame is skipped', async () => {
    const payload = randomBytes(300 * 1024 + 5);
    const file = join(root, 'frames.zst');
    await writeFile(
      file,
      Buffer.concat([rawFrame(payload), skippableFrame(Buffer.from('{}')), zstd(Buffer.from('x'))]),
    );
    const out = join(root, 'frames.out');
    await runProcess('sh', ['-c', 'zstd -dc "$1" > "$2"', 'sh', file, out], { timeoutMs: 30_000 });
    assert.deepEqual(await readFile(out), Buffer.concat([payload, Buffer.from('x')]));
  });

  it('reads a raw frame back in any chunking, and refuses frames it did not write', () => {
    const payload = randomBytes(200_000);
    const frame = rawFrame(payload);
    assert.equal(rawPayloadBytes(frame.length), payload.length);
    // One full block is 131,084 bytes, two blocks at least 131,088: nothing has a size between.
    assert.equal(rawPayloadBytes(131_085), -1);
    for (const step of [1, 3, 4096, frame.length]) {
      const got: Buffer[] = [];
      const reader = new RawFrameReader(payload.length, (b) => got.push(Buffer.from(b)));
      for (let at = 0; at < frame.length; at += step) reader.write(frame.subarray(at, at + step));
      reader.end();
      assert.deepEqual(Buffer.concat(got), payload);
    }
    const reader = () => new RawFrameReader(payload.length, () => {});
    // zstd's own frame of the same size, with compressed blocks.
    const compressed = zstd(Buffer.alloc(payload.length, 'abc'));
    assert.throws(() => reader().write(compressed), /raw zstd frame|compressed block/);
    assert.throws(() => new RawFrameReader(payload.length - 1, () => {}).write(frame), /holds 200000 bytes/);
    const cut = reader();
    cut.write(frame.subarray(0, frame.length - 1));
    assert.throws(() => cut.end(), /truncated/);
    assert.throws(() => reader().write(Buffer.concat([frame, Buffer.from([0])])), /after the end/);
    assert.equal(rawFrameBytes(0), rawFrame(Buffer.alloc(0)).length);
  });
});

describe('archive layout 2', () => {
  it('stores packs and their indexes as raw frames and compresses the rest', () => {
    const index = JSON.parse(
      skippableFrameData(archive.subarray(archive.length - indexBytesOf()))!.toString(),
    );
    const stored = index.pieces
      .filter((p: { kind: string }) => p.kind === 'file')
      .map((p: { path: string }) => p.path);
    assert.deepEqual(stored.sort(), ['objects/pack/pack-a.idx', 'objects/pack/pack-a.pack']);
    const contents = index.pieces.filter((p: { kind: string }) => p.kind === 'content');
    assert.equal(contents.length, 3 + 1, 'the pack in three pieces, the index in one');
    // The 3 MiB log compresses to almost nothing: it went with the entries.
    assert.ok(archive.length < PIECE_BYTES * 2 + 1024 * 1024 + 512 * 1024);
  });

  it('restores the same tree from a local file, from a stream, and by hand with zstd and tar', async () => {
    const expected = await listTree(mirror);
    const file = await open(archivePath);
    try {
      const local = await restoreInto({ fd: file.fd, read: streamSource(archive).read }, check);
      assert.deepEqual(await listTree(local.target), expected);
      assert.equal(local.result.bytes, await bytesOf(mirror));
    } finally {
      await file.close();
    }
    const streamed = await restoreInto(streamSource(archive), check);
    assert.deepEqual(await listTree(streamed.target), expected);
    const byHand = join(root, 'by-hand');
    await mkdir(byHand);
    await runProcess('sh', ['-c', 'zstd -dc "$1" | tar -x -C "$2"', 'sh', archivePath, byHand], {
      timeoutMs: 60_000,
    });
    assert.deepEqual(await listTree(byHand), expected);
  });

  it('writes the same archive as a stream (for S3) as to a file', async () => {
    const stream = createArchiveStream(mirror);
    const streamed = Buffer.concat(await stream.toArray());
    assert.equal(stream.digest.sizeBytes, streamed.length);
    const streamedCheck = checkOf(streamed, stream.digest.indexBytes);
    assert.equal(stream.digest.sha256, streamedCheck.sha256);
    const { target } = await restoreInto(streamSource(streamed), streamedCheck);
    assert.deepEqual(await listTree(target), await listTree(mirror));
  });

  it('refuses a changed byte in any piece, and an index the manifest does not vouch for', async () => {
    for (const at of [100, PIECE_BYTES + 1000, archive.length - indexBytesOf() - 20]) {
      const bad = Buffer.from(archive);
      bad[at]! ^= 1;
      await assert.rejects(restoreInto(streamSource(bad), check), isCode('SNAPSHOT_CORRUPT'), `byte ${at}`);
    }
    const { data } = withIndex((index) => index.pieces.reverse());
    await assert.rejects(restoreInto(streamSource(data), check), /index sha256/);
    await assert.rejects(
      restoreInto(streamSource(archive), {
        layout: 2,
        sizeBytes: archive.length,
        sha256: check.sha256,
        indexBytes: 100,
      }),
      isCode('SNAPSHOT_CORRUPT'),
    );
  });

  it('read from a store, each worker reads its own runs of pieces as ranges, at once, each byte once', async () => {
    const ranges: { start: number; end: number }[] = [];
    let open = 0;
    let mostOpen = 0;
    const source: ArchiveSource = {
      read: async (range) => {
        ranges.push(range);
        mostOpen = Math.max(mostOpen, ++open);
        // Each range arrives in small chunks over a few turns, so the reads overlap.
        const bytes = archive.subarray(range.start, range.end + 1);
        return Readable.from(
          (async function* () {
            for (let at = 0; at < bytes.length; at += 256 * 1024) {
              await new Promise((r) => setImmediate(r));
              yield bytes.subarray(at, at + 256 * 1024);
            }
            open--;
          })(),
        );
      },
    };
    const target = join(root, `t${n++}`);
    await mkdir(target);
    await restoreArchive(source, target, check, { threads: 2 });
    assert.deepEqual(await listTree(target), await listTree(mirror));
    const [index, ...runs] = ranges;
    assert.deepEqual(index, { start: archive.length - indexBytesOf(), end: archive.length - 1 });
    runs.sort((a, b) => a.start - b.start);
    assert.ok(runs.length > 2, `${runs.length} runs`);
    // Every byte before the index, once, in runs that meet.
    assert.equal(runs[0]!.start, 0);
    for (let i = 1; i < runs.length; i++) assert.equal(runs[i]!.start, runs[i - 1]!.end + 1);
    assert.equal(runs.at(-1)!.end, archive.length - indexBytesOf() - 1);
    assert.equal(mostOpen, 2, 'one read per worker at a time, both at once');
  });

  it('refuses an index that lies, even when the manifest vouches for it', async () => {
    const file = (index: { pieces: Record<string, unknown>[] }) =>
      index.pieces.find((p) => p.kind === 'file')!;
    const cases: [string, (index: { pieces: Record<string, unknown>[] }) => void, string | RegExp][] = [
      [
        'a stored path outside the target',
        (i) => (file(i).path = '../../escape.pack'),
        'SNAPSHOT_UNSAFE_ENTRY',
      ],
      [
        'a stored path its header does not carry',
        (i) => (file(i).path = 'objects/pack/other.pack'),
        /does not match the index/,
      ],
      ['a stored mode its header does not carry', (i) => (file(i).mode = 0o755), /does not match the index/],
      ['pieces out of order', (i) => i.pieces.push(i.pieces.shift()!), 'SNAPSHOT_CORRUPT'],
      ['a piece left out', (i) => i.pieces.splice(1, 1), 'SNAPSHOT_CORRUPT'],
    ];
    for (const [name, edit, expected] of cases) {
      const { data, check: lying } = withIndex(edit);
      const match = typeof expected === 'string' ? isCode(expected) : expected;
      await assert.rejects(restoreInto(streamSource(data), lying), match, name);
    }
    assert.deepEqual(await readdir(root).then((names) => names.filter((x) => x.startsWith('escape'))), []);
  });

  it('survives arbitrary edits of its index: success or a typed error, nothing written outside', async () => {
    const outside = join(root, 'outside');
    await mkdir(outside, { recursive: true });
    const values = fc.oneof(
      fc.integer({ min: -2, max: 2 * PIECE_BYTES }),
      fc.constantFrom('entries', 'file', 'content', '../x', '/etc/x', 'objects/pack/pack-a.pack', ''),
      fc.constant(null),
    );
    const field = fc.constantFrom('kind', 'bytes', 'sha256', 'path', 'size', 'mode', 'length');
    await fc.assert(
      fc.asyncProperty(fc.nat(), field, values, async (which, key, value) => {
        const { data, check: lying } = withIndex((index) => {
          index.pieces[which % index.pieces.length]![key] = value;
        });
        const target = join(outside, `t${n++}`);
        await mkdir(target);
        try {
          await restoreArchive(streamSource(data), target, lying);
        } catch (err) {
          assert.match(
            String((err as { code?: string }).code),
            /^SNAPSHOT_(CORRUPT|UNSAFE_ENTRY)$/,
            String(err),
          );
        }
        assert.deepEqual(
          (await readdir(outside)).filter((x) => !x.startsWith('t')),
          [],
        );
        await rm(target, { recursive: true, force: true });
      }),
      { numRuns: 25 },
    );
  });

  it('checks the index as untrusted input', () => {
    const size = rawFrameBytes(PIECE_BYTES);
    const entries = { kind: 'entries', bytes: 10, sha256: 'a'.repeat(64) };
    assert.throws(() => placePieces({ layout: 2, pieces: [] }, 10, 1), /0 pieces/);
    assert.throws(() => placePieces({ layout: 2, pieces: [entries] }, 12, 1), /span 10 bytes/);
    const content = { kind: 'content', bytes: size, sha256: 'a'.repeat(64), length: PIECE_BYTES };
    assert.throws(
      () => placePieces({ layout: 2, pieces: [content, entries] }, size + 11, 1),
      /not valid content/,
    );
    const header = {
      kind: 'file',
      bytes: rawFrameBytes(512),
      sha256: 'a'.repeat(64),
      path: 'x.pack',
      size: 1,
      mode: 0o644,
    };
    assert.throws(
      () => placePieces({ layout: 2, pieces: [header, entries] }, 1000, 1),
      /interrupts the content/,
    );
    assert.throws(
      () => placePieces({ layout: 2, pieces: [entries, header] }, 1000, 1),
      /content of x.pack is incomplete/,
    );
  });
});
