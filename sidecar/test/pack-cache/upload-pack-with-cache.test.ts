import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, afterEach, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../../core/log.ts';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { addCommit, objectsOf, refsOf } from '../../../testing/git-repos.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import { pktLine } from '../../src/http/pkt-line.ts';
import { PackCache } from '../../src/pack-cache/pack-cache.ts';
import { recordingObserver, startCacheGitServer } from './cache-git-server.ts';
import { createPackRepo, packObjectsPid, packObjectsStarted, RecordingGit } from './fixtures.ts';

const SERVER = fileURLToPath(new URL('./cache-git-server.ts', import.meta.url));

/** Runs git to completion; a failure is returned, not thrown. */
function run(args: string[], cwd?: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('git', args, { env: GIT_ENV, cwd }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
    child.stdin?.end();
  });
}

describe('upload-pack with the pack cache, real clients over HTTP', () => {
  let root: string;
  let bare: string;
  let work: string;
  let trace: string;
  let n = 0;
  const cleanups: (() => Promise<unknown>)[] = [];

  before(async () => {
    root = await tempDir();
    ({ bare, work } = await createPackRepo(join(root, 'upstream')));
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
    options: { git?: RecordingGit; maxBytes?: number; keepaliveMs?: number; maxStdinBytes?: number } = {},
  ) {
    const observer = recordingObserver();
    const gitRunner = options.git ?? new RecordingGit({ env: { GIT_TRACE2_EVENT: trace } });
    const cache = await PackCache.open({
      dir: join(root, `cache-${++n}`),
      maxBytes: options.maxBytes ?? 1 << 30,
      ttlMs: 60_000,
      git: gitRunner,
      gitVersion: 'git version test',
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
      observer,
      pollMs: 5,
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
    return { url: server.url, cache, observer, git: gitRunner };
  }

  const variants: [string, string[]][] = [
    ['protocol v0', ['-c', 'protocol.version=0', 'clone', '--bare']],
    ['protocol v1', ['-c', 'protocol.version=1', 'clone', '--bare']],
    ['protocol v2', ['-c', 'protocol.version=2', 'clone', '--bare']],
    ['--filter=blob:none', ['-c', 'protocol.version=2', 'clone', '--bare', '--filter=blob:none']],
    ['--depth 1', ['-c', 'protocol.version=2', 'clone', '--bare', '--depth', '1']],
    ['--depth 1, protocol v0', ['-c', 'protocol.version=0', 'clone', '--bare', '--depth', '1']],
  ];
  for (const [name, args] of variants) {
    it(`${name}: an answer from the cache has the refs and objects upload-pack alone gives, fsck clean`, async () => {
      const { url, observer } = await serve();
      const plain = join(root, `plain-${n}`);
      await git([...args, '--no-local', bare, plain]);
      const clones = [join(root, `first-${n}`), join(root, `second-${n}`)];
      for (const target of clones) await git([...args, url, target]);
      assert.deepEqual(observer.lookups, ['miss', 'hit']);
      for (const target of clones) {
        await git(['fsck', '--strict', '--no-progress'], { cwd: target });
        assert.equal(await refsOf(target), await refsOf(plain));
        assert.deepEqual(await objectsOf(target), await objectsOf(plain));
        assert.equal(
          await git(['rev-parse', '--is-shallow-repository'], { cwd: target }),
          await git(['rev-parse', '--is-shallow-repository'], { cwd: plain }),
        );
      }
    });
  }

  it('answers identical fetches with haves from one generation', async () => {
    const { url, observer } = await serve();
    const clones = [join(root, `fetch-a-${n}`), join(root, `fetch-b-${n}`)];
    for (const target of clones) await git(['clone', '--bare', '--quiet', url, target]);
    const tip = await addCommit(work, 'late.txt', 'late\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    for (const target of clones) {
      await git(['fetch', '--quiet', url, 'main:main'], { cwd: target });
      assert.equal((await git(['rev-parse', 'main'], { cwd: target })).trim(), tip);
      await git(['fsck', '--strict', '--no-progress'], { cwd: target });
    }
    assert.deepEqual(observer.lookups.slice(-2), ['miss', 'hit']);
  });

  it('runs pack-objects once for 16 concurrent identical clones', async () => {
    const recording = new RecordingGit({ startDelay: 1, env: { GIT_TRACE2_EVENT: trace } });
    const { url, observer } = await serve({ git: recording });
    const before = await packObjectsStarted(trace);
    const targets = Array.from({ length: 16 }, (_, i) => join(root, `fan-out-${n}-${i}`));
    const results = await Promise.all(targets.map((t) => run(['clone', '--bare', '--quiet', url, t])));
    assert.deepEqual(
      results.map((r) => r.code),
      new Array(16).fill(0),
      results.map((r) => r.stderr).join('\n'),
    );
    assert.equal((await packObjectsStarted(trace)) - before, 1, 'one pack-objects process in all');
    assert.equal(observer.lookups.filter((r) => r === 'miss').length, 1);
    assert.equal(observer.lookups.length, 16);
    assert.ok(observer.lookups.includes('joined'), `lookups: ${observer.lookups.join(',')}`);
    for (const target of targets) await git(['fsck', '--strict', '--no-progress'], { cwd: target });
  });

  it('fails every clone when the generating pack-objects is killed, and the next generates afresh', async () => {
    const releaseFile = join(root, `release-${n}`);
    const recording = new RecordingGit({ stallAfterBytes: 64 * 1024, releaseFile });
    const { url, cache } = await serve({ git: recording });
    const targets = Array.from({ length: 4 }, (_, i) => join(root, `killed-${n}-${i}`));
    const clones = targets.map((t) => run(['clone', '--bare', url, t]));
    await waitFor('a generation in progress', () => recording.generations.length === 1, {
      timeoutMs: 20_000,
    });
    await waitFor('all four clients reading', () => cache.stats().readers === 4, { timeoutMs: 20_000 });
    process.kill(await packObjectsPid(recording.generations[0]!), 'SIGKILL');
    await writeFile(releaseFile, '');
    for (const result of await Promise.all(clones)) {
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /remote: gitmirror: pack generation failed: .*exited with 137/);
    }
    for (const target of targets) assert.equal(await readdir(target).catch(() => 'absent'), 'absent');
    await waitFor('nothing held', () => cache.bytesHeld === 0);
    const retry = join(root, `retry-${n}`);
    await git(['clone', '--bare', '--quiet', url, retry]);
    await git(['fsck', '--strict', '--no-progress'], { cwd: retry });
    assert.equal(recording.generations.length, 2);
  });

  it('fails every clone when the serving process is killed, and the restart generates afresh', async () => {
    const dir = join(root, `process-${++n}`);
    const releaseFile = join(root, `process-release-${n}`);
    const generations: number[] = [];
    const first = await startServerProcess(
      { dir, repoDir: bare, stallAfterBytes: 64 * 1024, releaseFile },
      generations,
    );
    const targets = Array.from({ length: 3 }, (_, i) => join(root, `orphaned-${n}-${i}`));
    const clones = targets.map((t) => run(['clone', '--bare', first.url, t]));
    await waitFor('a generation in progress', () => generations.length === 1, { timeoutMs: 20_000 });
    await waitFor('its first bytes on disk', async () => (await readdir(join(dir, 'packs'))).length === 1);
    first.child.kill('SIGKILL');
    for (const result of await Promise.all(clones)) assert.notEqual(result.code, 0, 'no clone succeeds');
    for (const target of targets) assert.equal(await readdir(target).catch(() => 'absent'), 'absent');
    for (const pgid of generations) process.kill(-pgid, 'SIGKILL');
    const restarted = await startServerProcess({ dir, repoDir: bare }, generations);
    assert.deepEqual(await readdir(join(dir, 'packs')), [], 'the half-written entry was swept');
    const retry = join(root, `after-restart-${n}`);
    await git(['clone', '--bare', '--quiet', restarted.url, retry]);
    await git(['fsck', '--strict', '--no-progress'], { cwd: retry });
    assert.equal(generations.length, 2, 'the restart generated afresh');
  });

  it('lets the hook run pack-objects itself when the cache is full', async () => {
    const releaseFile = join(root, `full-${n}`);
    const recording = new RecordingGit({
      stallAfterBytes: 64 * 1024,
      releaseFile,
      env: { GIT_TRACE2_EVENT: trace },
    });
    const { url, cache, observer } = await serve({ git: recording, maxBytes: 1024 });
    const filling = run(['clone', '--bare', '--quiet', url, join(root, `filling-${n}`)]);
    await waitFor('the budget used up', () => cache.bytesHeld >= 1024, { timeoutMs: 20_000 });
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

  it('serves a client without side-band-64k by upload-pack alone', async () => {
    const { url, observer } = await serve();
    const tip = (await git(['rev-parse', 'main'], { cwd: bare })).trim();
    const request = `${pktLine(`want ${tip} ofs-delta\n`)}0000${pktLine('done\n')}`;
    const response = await post(url, request, {});
    assert.equal(response.subarray(0, 12).toString(), '0008NAK\nPACK');
    assert.deepEqual(observer.lookups, []);
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

  /** Server processes still running after a test, killed when it ends (a failed test included). */
  async function startServerProcess(
    options: { dir: string; repoDir: string; stallAfterBytes?: number; releaseFile?: string },
    generations: number[],
  ): Promise<{ child: ChildProcess; url: string }> {
    const child = spawn(process.execPath, [SERVER, JSON.stringify(options)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(async () => {
      child.kill('SIGKILL');
      if (options.releaseFile) await writeFile(options.releaseFile, '');
    });
    const lines = createInterface({ input: child.stdout! });
    const url = await new Promise<string>((resolve, reject) => {
      child.once('exit', () => reject(new Error('the server process exited')));
      lines.on('line', (line) => {
        const message = JSON.parse(line) as { generation?: number; url?: string };
        if (message.generation) generations.push(message.generation);
        if (message.url) resolve(message.url);
      });
    });
    return { child, url };
  }
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
