import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../../core/log.ts';
import { git } from '../../../testing/git.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import { PackCache } from '../../src/pack-cache/pack-cache.ts';
import type { PackLease } from '../../src/pack-cache/pack-entry.ts';
import { parsePackObjectsArgs } from '../../src/pack-cache/pack-request.ts';
import { relayHoldingFlush, writeSidebandPack } from '../../src/pack-cache/sideband-splice.ts';
import {
  CLONE_ARGS,
  cloneStdin,
  createPackRepo,
  objectsInPack,
  packObjectsPid,
  RecordingGit,
  readLease,
} from './fixtures.ts';

/** Splits a side-band stream into its bands, checking every packet's framing. */
function demux(stream: Buffer): { pack: Buffer; progress: string; error: string; keepalives: number } {
  const pack: Buffer[] = [];
  let progress = '';
  let error = '';
  let keepalives = 0;
  for (let at = 0; at < stream.length; ) {
    const length = Number.parseInt(stream.subarray(at, at + 4).toString('latin1'), 16);
    assert.ok(length >= 5 && length <= 65520, `packet length ${length} at ${at}`);
    const band = stream[at + 4];
    const data = stream.subarray(at + 5, at + length);
    if (band === 1 && data.length === 0) keepalives++;
    else if (band === 1) pack.push(data);
    else if (band === 2) progress += data.toString();
    else if (band === 3) error += data.toString();
    else assert.fail(`band ${band}`);
    at += length;
  }
  return { pack: Buffer.concat(pack), progress, error, keepalives };
}

/** A response stand-in that, like a socket, is done with a chunk when it calls back. */
function collect(): { out: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      callback();
    },
  });
  return { out, bytes: () => Buffer.concat(chunks) };
}

describe('a cached pack written into a response as side-band packets', () => {
  let root: string;
  let bare: string;
  let n = 0;

  before(async () => {
    root = await tempDir();
    ({ bare } = await createPackRepo(join(root, 'upstream')));
  });
  after(() => removeDir(root));

  async function leaseFrom(git: RecordingGit, extra: string[] = []) {
    const cache = await PackCache.open({
      dir: join(root, `cache-${++n}`),
      maxBytes: 1 << 30,
      ttlMs: 60_000,
      git,
      gitVersion: 'v',
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
      pollMs: 5,
    });
    const request = parsePackObjectsArgs([...CLONE_ARGS, ...extra], await cloneStdin(bare, ['main']));
    assert.ok(!('unsupported' in request));
    const again = async (): Promise<PackLease> => {
      const acquired = await cache.acquire({ repoId: 'r', dir: bare, request });
      assert.ok('lease' in acquired);
      return acquired.lease;
    };
    return { lease: await again(), cache, again };
  }

  it('frames the whole pack in packets of at most 65520 bytes while it is generated, with progress', async () => {
    const {
      lease,
      cache,
      again: acquire,
    } = await leaseFrom(new RecordingGit({ startDelay: 0.2 }), ['--progress']);
    const { out, bytes } = collect();
    const sent = await writeSidebandPack(lease, out, { progress: true, keepaliveMs: 5_000 });
    const { pack, progress, error } = demux(bytes());
    assert.equal(sent, pack.length);
    assert.equal(error, '');
    assert.match(progress, /Total \d+/, 'pack-objects’ own progress reaches the client');
    // --include-tag adds the annotated tag on main.
    const reachable = await git(['rev-list', '--objects', 'main', 'v1.0'], { cwd: bare });
    const expected = reachable
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(0, 40))
      .sort();
    assert.deepEqual(await objectsInPack(pack, join(root, `index-${n}`)), expected);
    lease.release(sent);
    const hit = await acquire();
    assert.equal(hit.role, 'hit');
    const again = collect();
    await writeSidebandPack(hit, again.out, { progress: true, keepaliveMs: 5_000 });
    assert.ok(demux(again.bytes()).pack.equals(pack));
    assert.match(demux(again.bytes()).progress, /gitmirror: pack served from the cache/);
    hit.release();
    await cache.close();
  });

  it('sends keepalives while a generation is silent, and no progress to a client that asked for none', async () => {
    const { lease, cache } = await leaseFrom(new RecordingGit({ startDelay: 1 }));
    const { out, bytes } = collect();
    await writeSidebandPack(lease, out, { progress: false, keepaliveMs: 200 });
    const { keepalives, progress, pack } = demux(bytes());
    assert.ok(keepalives >= 2, `keepalives: ${keepalives}`);
    assert.equal(progress, '');
    assert.ok(pack.subarray(0, 4).equals(Buffer.from('PACK')));
    lease.release();
    await cache.close();
  });

  it('ends with a band-3 error, never a short pack, when the generation dies', async () => {
    const releaseFile = join(root, 'release');
    const git = new RecordingGit({ stallAfterBytes: 64 * 1024, releaseFile });
    const { lease, cache } = await leaseFrom(git);
    const { out, bytes } = collect();
    const writing = writeSidebandPack(lease, out, { progress: false, keepaliveMs: 5_000 }).then(
      () => 'whole',
      (err: Error) => err.message,
    );
    await waitFor('64 KiB generated', () => lease.bytes >= 64 * 1024, { timeoutMs: 20_000 });
    process.kill(await packObjectsPid(git.generations[0]!), 'SIGKILL');
    await writeFile(releaseFile, '');
    assert.match(await writing, /pack generation failed/);
    const { error, pack } = demux(bytes());
    assert.match(error, /gitmirror: pack generation failed/);
    assert.ok(pack.length >= 64 * 1024, 'what was generated went out first, then the error');
    await assert.rejects(readLease(lease));
    lease.release();
    await cache.close();
  });

  it('relays upload-pack’s output and keeps back the final flush for a spliced pack', async () => {
    for (const chunks of [
      ['000dpackfile\n0000'],
      ['000dpack', 'file\n00', '0', '0'],
      ['0008NAK\n', '0000'],
    ]) {
      const source = new PassThrough();
      const { out, bytes } = collect();
      const held = relayHoldingFlush(source, out);
      for (const chunk of chunks) source.write(chunk);
      source.end();
      assert.equal((await held).toString(), '0000');
      assert.equal(`${bytes().toString()}0000`, chunks.join(''));
    }
  });
});
