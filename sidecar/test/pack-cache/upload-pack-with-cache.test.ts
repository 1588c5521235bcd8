import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { silentLogger } from '../../../core/log.ts';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { objectsOf } from '../../../testing/git-repos.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import { pktLine } from '../../src/http/pkt-line.ts';
import { FileSender } from '../../src/pack-cache/file-sender.ts';
import { PackCache } from '../../src/pack-cache/pack-cache.ts';
import { recordingObserver, startCacheGitServer } from './cache-git-server.ts';
import { createPackRepo, packObjectsStarted, RecordingGit } from './fixtures.ts';

/** Runs git to completion; a failure is returned, not thrown. */
function run(args: string[], cwd?: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('git', args, { env: GIT_ENV, cwd }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
    child.stdin?.end();
  });
}

/**
 * uploadPackWithCache on its own, behind a small HTTP server with knobs the sidecar does not
 * expose (keepalive interval, stdin bound): what happens when the cache will not or cannot
 * take a request, and how a client waiting on a generation is kept alive. Clones and fetches
 * through the sidecar itself are in serving.test.ts.
 */
describe('upload-pack with the pack cache, real clients over HTTP', () => {
  let root: string;
  let bare: string;
  let trace: string;
  let n = 0;
  const cleanups: (() => Promise<unknown>)[] = [];

  before(async () => {
    root = await tempDir();
    ({ bare } = await createPackRepo(join(root, 'upstream')));
    await git(['config', 'uploadpack.allowFilter', 'true'], { cwd: bare });
    // Every git process (upload-pack, a generation, the hook's own pack-objects) writes a
    // trace2 start event here: pack-objects runs are counted, not inferred.
    trace = join(root, 'trace2.json');
  });
  after(() => removeDir(root));
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });

  async function serve(
    options: {
      git?: RecordingGit;
      maxBytes?: number;
      keepaliveMs?: number;
      maxStdinBytes?: number;
      fileSender?: FileSender;
    } = {},
  ) {
    const dir = join(root, `cache-${++n}`);
    const observer = recordingObserver();
    const gitRunner = options.git ?? new RecordingGit({ env: { GIT_TRACE2_EVENT: trace } });
    const cache = await PackCache.open({
      dir,
      maxBytes: options.maxBytes ?? 1 << 30,
      ttlMs: 60_000,
      git: gitRunner,
      gitVersion: 'git version test',
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
      observer,
      pollMs: 5,
      fileSender: options.fileSender,
    });
    const server = await startCacheGitServer({
      repoDir: bare,
      cache,
      git: gitRunner,
      keepaliveMs: options.keepaliveMs,
      maxStdinBytes: options.maxStdinBytes,
    });
    cleanups.push(async () => {
      await server.close();
      await cache.close();
    });
    return { url: server.url, cache, observer, git: gitRunner, dir };
  }

  it('lets the hook run pack-objects itself when the cache is full', async () => {
    const releaseFile = join(root, `full-${n}`);
    const recording = new RecordingGit({
      stallAfterBytes: 64 * 1024,
      releaseFile,
      env: { GIT_TRACE2_EVENT: trace },
    });
    const { url, cache, observer } = await serve({ git: recording, maxBytes: 1024 });
    const filling = run(['clone', '--bare', '--quiet', url, join(root, `filling-${n}`)]);
    await waitFor('the budget used up', () => cache.bytesHeld() >= 1024, { timeoutMs: 20_000 });
    const before = await packObjectsStarted(trace);
    const other = join(root, `bypassed-${n}`);
    await git(['clone', '--bare', '--quiet', '--depth', '1', url, other]);
    await git(['fsck', '--strict', '--no-progress'], { cwd: other });
    assert.equal((await packObjectsStarted(trace)) - before, 1, 'the hook ran its own pack-objects');
    assert.deepEqual(observer.lookups, ['miss', 'bypass']);
    await writeFile(releaseFile, '');
    assert.equal((await filling).code, 0);
  });

  it('lets the hook run pack-objects itself when the sidecar hangs up on its request', async () => {
    const { url, observer } = await serve({ maxStdinBytes: 10 });
    const before = await packObjectsStarted(trace);
    const target = join(root, `refused-${n}`);
    await git(['clone', '--bare', '--quiet', url, target]);
    await git(['fsck', '--strict', '--no-progress'], { cwd: target });
    assert.deepEqual(await objectsOf(target), await objectsOf(bare));
    assert.equal((await packObjectsStarted(trace)) - before, 1, 'the hook ran its own pack-objects');
    assert.deepEqual(observer.lookups, ['bypass'], 'counted as a bypass');
  });

  /** The sender found on this machine, counting the bytes it was asked to send. */
  async function countingSender(): Promise<{ sender: FileSender; sent: number[] }> {
    const sender = await FileSender.find();
    assert.ok(sender, 'perl with syscall.ph (git depends on perl) finds sendfile');
    const sent: number[] = [];
    const send = sender.send.bind(sender);
    sender.send = (options) => {
      sent.push(options.length);
      return send(options);
    };
    return { sender, sent };
  }

  it('sends a completed pack with sendfile, byte for byte the response the copy makes', async () => {
    const tips = [
      ...new Set((await git(['for-each-ref', '--format=%(objectname)'], { cwd: bare })).trim().split('\n')),
    ];
    const request = `${pktLine('command=fetch\n')}0001${tips.map((t) => pktLine(`want ${t}\n`)).join('')}${pktLine('ofs-delta\n')}${pktLine('done\n')}0000`;
    const v2 = { 'Git-Protocol': 'version=2' };
    const copied = await serve();
    await post(copied.url, request, v2);
    const byCopy = await post(copied.url, request, v2);
    const { sender, sent } = await countingSender();
    const sending = await serve({ fileSender: sender });
    await post(sending.url, request, v2);
    const bySendfile = await post(sending.url, request, v2);
    assert.ok(sent.length >= 1, 'the hit went through the file sender');
    assert.ok(bySendfile.equals(byCopy), 'identical responses');
    // Real clients over both protocols: the second clone of each is a hit, whole and fsck clean.
    for (const version of ['0', '2']) {
      const before = sent.length;
      for (const attempt of ['miss', 'hit']) {
        const target = join(root, `sendfile-v${version}-${attempt}-${n}`);
        await git(['-c', `protocol.version=${version}`, 'clone', '--bare', '--quiet', sending.url, target]);
        await git(['fsck', '--strict', '--no-progress'], { cwd: target });
        assert.deepEqual(await objectsOf(target), await objectsOf(bare));
      }
      assert.ok(sent.length > before, `protocol v${version}: the hit went through the file sender`);
    }
  });

  it('cuts the response off when the file sender cannot send the whole pack', async () => {
    const { sender, sent } = await countingSender();
    const { url, dir } = await serve({ fileSender: sender });
    await git(['clone', '--bare', '--quiet', url, join(root, `whole-${n}`)]);
    // The completed entry loses its end on disk: the sender finds the file shorter than the pack.
    const [name] = await readdir(dir);
    await truncate(join(dir, name!), 80 * 1024);
    const target = join(root, `cut-${n}`);
    const result = await run(['clone', '--bare', '--quiet', url, target]);
    assert.notEqual(result.code, 0, 'the clone fails rather than taking part of a pack for the whole');
    assert.ok(sent.length >= 1);
    assert.deepEqual(await readdir(root).then((names) => names.includes(`cut-${n}`)), false);
  });

  it('keeps a client that joined a slow generation alive with keepalives, and tells it so', async () => {
    const recording = new RecordingGit({ startDelay: 2 });
    const { url } = await serve({ git: recording, keepaliveMs: 300 });
    const tips = [
      ...new Set((await git(['for-each-ref', '--format=%(objectname)'], { cwd: bare })).trim().split('\n')),
    ];
    const request = `${pktLine('command=fetch\n')}0001${tips.map((t) => pktLine(`want ${t}\n`)).join('')}${pktLine('ofs-delta\n')}${pktLine('done\n')}0000`;
    const leader = post(url, request, { 'Git-Protocol': 'version=2' });
    await waitFor('the generation started', () => recording.generations.length === 1, { timeoutMs: 20_000 });
    const follower = await post(url, request, { 'Git-Protocol': 'version=2' });
    await leader;
    const packfile = follower.indexOf('packfile\n');
    const packData = follower.indexOf('\x01PACK', packfile);
    assert.ok(packfile > 0 && packData > packfile);
    const waiting = follower.subarray(packfile, packData).toString('latin1');
    assert.ok(waiting.includes('0005\x01'), 'keepalive packets while waiting');
    assert.ok(
      waiting.includes('\x02gitmirror: joined a pack generation already under way'),
      'progress says so',
    );
    assert.equal(recording.generations.length, 1);
  });
});

async function post(repoUrl: string, body: string, headers: Record<string, string>): Promise<Buffer> {
  const res = await fetch(`${repoUrl}/git-upload-pack`, {
    method: 'POST',
    body,
    headers: { 'Content-Type': 'application/x-git-upload-pack-request', ...headers },
  });
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}
