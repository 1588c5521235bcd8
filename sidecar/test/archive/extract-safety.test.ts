import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { extractArchive } from '../../src/archive/archive-extract.ts';
import { type RawEntry, rawTar, sha256, zstd } from './support/tar-fixtures.ts';

let sandbox: string;
let outside: string;
let counter = 0;

before(async () => {
  sandbox = await mkdtemp(join(tmpdir(), 'gm-extract-safety-'));
  outside = join(sandbox, 'outside');
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'original\n');
});
after(() => rm(sandbox, { recursive: true, force: true }));

async function extractEntries(entries: RawEntry[], limits = {}) {
  const archive = zstd(rawTar(entries));
  const target = join(sandbox, `target-${counter++}`);
  await mkdir(target);
  const result = extractArchive(Readable.from([archive]), target, {
    expectedSize: archive.length,
    expectedSha256: sha256(archive),
    limits,
  });
  return { result, target };
}

async function assertRejected(entries: RawEntry[], code = 'SNAPSHOT_UNSAFE_ENTRY') {
  const { result } = await extractEntries(entries);
  await assert.rejects(result, (err: { code?: string }) => err.code === code);
  assert.deepEqual((await readdir(outside)).sort(), ['secret'], 'nothing may appear next to the target');
  assert.equal(await readFile(join(outside, 'secret'), 'utf8'), 'original\n');
}

describe('extractArchive refuses hostile entries', () => {
  it('accepts a plain tree of files and directories, with ./ prefixes and sane modes', async () => {
    const { result, target } = await extractEntries([
      { path: './', type: 'Directory' },
      { path: './objects/', type: 'Directory', mode: 0o7777 },
      { path: './objects/pack/a.pack', body: 'pack', mode: 0o4444 },
      { path: 'HEAD', body: 'ref: refs/heads/main\n' },
    ]);
    assert.deepEqual(await result, { entries: 4, bytes: 25 });
    assert.equal(await readFile(join(target, 'objects/pack/a.pack'), 'utf8'), 'pack');
    const mode = (await stat(join(target, 'objects/pack/a.pack'))).mode & 0o7777;
    assert.equal(mode & 0o7000, 0, 'setuid/setgid/sticky are dropped');
    assert.equal(mode & 0o200, 0o200, 'files are owner-writable');
  });

  it('rejects a ../ path', () => assertRejected([{ path: '../outside/pwned', body: 'x' }]));
  it('rejects a bare ..', () => assertRejected([{ path: '..', type: 'Directory' }]));
  it('rejects .. in the middle', () => assertRejected([{ path: 'a/../../outside/pwned', body: 'x' }]));
  it('rejects ./.. prefixes', () => assertRejected([{ path: './../outside/pwned', body: 'x' }]));
  it('rejects an absolute path', () => assertRejected([{ path: `${sandbox}/outside/abs-pwned`, body: 'x' }]));
  it('rejects empty segments', () => assertRejected([{ path: 'a//b', body: 'x' }]));

  it('rejects a symlink, so no later file can be written through it', async () => {
    await assertRejected([
      { path: 'evil', type: 'SymbolicLink', linkpath: '../outside' },
      { path: 'evil/pwned', body: 'x' },
    ]);
    await assertRejected([
      { path: 'etc', type: 'SymbolicLink', linkpath: '/etc' },
      { path: 'etc/gitmirror-test-pwned', body: 'x' },
    ]);
    assert.equal(existsSync('/etc/gitmirror-test-pwned'), false);
  });

  it('rejects a hard link to a file outside, and a write through it', () =>
    assertRejected([
      { path: 'h', type: 'Link', linkpath: '../outside/secret' },
      { path: 'h', body: 'overwritten\n' },
    ]));
  it('rejects a hard link to /etc/passwd', () =>
    assertRejected([{ path: 'p', type: 'Link', linkpath: '/etc/passwd' }]));
  it('rejects a character device', () => assertRejected([{ path: 'null', type: 'CharacterDevice' }]));
  it('rejects a block device', () => assertRejected([{ path: 'sda', type: 'BlockDevice' }]));
  it('rejects a FIFO', () => assertRejected([{ path: 'fifo', type: 'FIFO' }]));
  it('rejects a duplicate file instead of overwriting', () =>
    assertRejected([
      { path: 'config', body: 'first' },
      { path: 'config', body: 'second' },
    ]));

  it('fails on the bad entry even after good ones', async () => {
    const { result, target } = await extractEntries([
      { path: 'HEAD', body: 'ref: refs/heads/main\n' },
      { path: 'link', type: 'SymbolicLink', linkpath: 'HEAD' },
    ]);
    await assert.rejects(result, /symbolic links are not allowed/);
    assert.deepEqual(await readdir(target), ['HEAD'], 'the link itself was never created');
  });

  it('enforces the entry-count and size bounds', async () => {
    const many = await extractEntries(
      [1, 2, 3].map((i) => ({ path: `f${i}`, body: 'x' })),
      { maxEntries: 2 },
    );
    await assert.rejects(many.result, /more than 2 entries/);
    const big = await extractEntries([{ path: 'big', body: 'x'.repeat(2000) }], { maxEntryBytes: 1000 });
    await assert.rejects(big.result, /larger than 1000 bytes/);
    const total = await extractEntries(
      [1, 2].map((i) => ({ path: `f${i}`, body: 'x'.repeat(600) })),
      { maxTotalBytes: 1000 },
    );
    await assert.rejects(total.result, /expands beyond 1000 bytes/);
  });
});
