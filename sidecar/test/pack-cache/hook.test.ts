import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, realpath, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pktLine } from '../../src/http/pkt-line.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { PackHookServer, uploadPackHookArgs } from '../../src/pack-cache/hook-server.ts';
import { PackCache, type PackCacheObserver } from '../../src/pack-cache/pack-cache.ts';
import { relaySplicing } from '../../src/pack-cache/sideband-splice.ts';
import { addCommit, GIT_ENV, git, objectsOf, refsOf, removeDir, tempDir } from '../support/git-fixtures.ts';
import { waitFor } from '../support/test-sidecar.ts';
import { createPackRepo, packObjectsPid, packObjectsStarted, RecordingGit } from './fixtures.ts';

const HOST = fileURLToPath(new URL('./cache-host.ts', import.meta.url));

interface Client {
  args: string[];
  env: Record<string, string>;
}

/**
 * `git clone`/`fetch` options that make the client's upload-pack (file transport) run the
 * hook, with every git process below it tracing to `trace`.
 */
function through(hooks: { uploadPackArgs: string[]; env: Record<string, string> }, trace: string): Client {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  return {
    args: [
      '--upload-pack',
      `GIT_TRACE2_EVENT=${quote(trace)} git ${hooks.uploadPackArgs.map(quote).join(' ')} upload-pack`,
    ],
    env: hooks.env,
  };
}

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('git', args, { env: { ...GIT_ENV, ...env } }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
    child.stdin?.end();
  });
}

describe('packObjectsHook with real upload-pack', () => {
  let root: string;
  let bare: string;
  let work: string;
  let trace: string;
  let n = 0;

  before(async () => {
    root = await tempDir();
    ({ bare, work } = await createPackRepo(join(root, 'upstream')));
    bare = await realpath(bare);
    await git(['config', 'uploadpack.allowFilter', 'true'], { cwd: bare });
    // Every git process, wherever it starts (a cache generation, upload-pack, the hook's own
    // fallback), writes a trace2 start event here: pack-objects runs are counted, not inferred.
    trace = join(root, 'trace2.json');
  });
  after(() => removeDir(root));
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
    for (const host of hosts) host.kill('SIGKILL');
    hosts.clear();
  });

  const packObjectsRuns = () => packObjectsStarted(trace);

  async function startCache(
    git = new RecordingGit({ env: { GIT_TRACE2_EVENT: trace } }),
    observer?: PackCacheObserver,
  ) {
    const dir = join(root, `cache-${++n}`);
    const cache = await PackCache.open({
      dir: join(dir, 'packs'),
      maxBytes: 1 << 30,
      ttlMs: 60_000,
      git,
      gitVersion: 'git version test',
      logger: silentLogger(),
      generationTimeoutMs: 60_000,
      observer,
      pollMs: 5,
    });
    const hooks = await PackHookServer.listen({
      socketPath: join(dir, 'hook.sock'),
      cache,
      logger: silentLogger(),
      resolveRepository: (d) => (d === bare ? { repoId: 'example.com/org/repo', dir: bare } : undefined),
    });
    const client = through({ uploadPackArgs: hooks.uploadPackArgs(), env: hooks.env() }, trace);
    const close = async () => {
      await hooks.close();
      await cache.close();
    };
    cleanups.push(close);
    return { cache, hooks, client, dir, close };
  }

  function lookups() {
    const seen: string[] = [];
    const observer: PackCacheObserver = {
      lookup: (r) => seen.push(r),
      generation() {},
      served() {},
      evicted() {},
    };
    return { seen, observer };
  }

  const variants: [string, string[]][] = [
    ['protocol v0', ['-c', 'protocol.version=0', 'clone', '--bare']],
    ['protocol v2', ['-c', 'protocol.version=2', 'clone', '--bare']],
    ['--filter=blob:none', ['-c', 'protocol.version=2', 'clone', '--bare', '--filter=blob:none']],
    ['--depth 1', ['-c', 'protocol.version=2', 'clone', '--bare', '--depth', '1']],
    ['--depth 1, protocol v0', ['-c', 'protocol.version=0', 'clone', '--bare', '--depth', '1']],
  ];
  for (const [name, args] of variants) {
    it(`${name}: a cached answer gives the same refs and objects as upload-pack alone, fsck clean`, async () => {
      const { seen, observer } = lookups();
      const cache = await startCache(undefined, observer);
      const plain = join(root, `plain-${n}`);
      await git([...args, '--no-local', bare, plain]);
      const clones = [join(root, `first-${n}`), join(root, `second-${n}`)];
      for (const target of clones)
        await git([...args, '--no-local', ...cache.client.args, bare, target], { env: cache.client.env });
      assert.deepEqual(seen, ['miss', 'hit']);
      for (const target of clones) {
        await git(['fsck', '--strict', '--no-progress'], { cwd: target });
        assert.equal(await refsOf(target), await refsOf(plain));
        assert.deepEqual(await objectsOf(target), await objectsOf(plain));
        assert.equal(
          await git(['rev-parse', '--is-shallow-repository'], { cwd: target }),
          await git(['rev-parse', '--is-shallow-repository'], { cwd: plain }),
        );
      }
      await cache.close();
    });
  }

  it('answers identical fetches with haves from one generation', async () => {
    const { seen, observer } = lookups();
    const cache = await startCache(undefined, observer);
    const clones = [join(root, `fetch-a-${n}`), join(root, `fetch-b-${n}`)];
    for (const target of clones) await git(['clone', '--bare', '--no-local', bare, target]);
    const tip = await addCommit(work, 'late.txt', 'late\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    for (const target of clones) {
      await git(['fetch', ...cache.client.args, bare, 'main:main'], { cwd: target, env: cache.client.env });
      assert.equal((await git(['rev-parse', 'main'], { cwd: target })).trim(), tip);
      await git(['fsck', '--strict', '--no-progress'], { cwd: target });
    }
    assert.deepEqual(seen, ['miss', 'hit']);
  });

  it('runs pack-objects once for 16 concurrent identical clones', async () => {
    const { seen, observer } = lookups();
    const recording = new RecordingGit({ startDelay: 1, env: { GIT_TRACE2_EVENT: trace } });
    const cache = await startCache(recording, observer);
    const before = await packObjectsRuns();
    const targets = Array.from({ length: 16 }, (_, i) => join(root, `fan-out-${n}-${i}`));
    const results = await Promise.all(
      targets.map((t) =>
        run(['clone', '--bare', '--no-local', ...cache.client.args, bare, t], cache.client.env),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.code),
      new Array(16).fill(0),
      results.map((r) => r.stderr).join('\n'),
    );
    assert.equal((await packObjectsRuns()) - before, 1, 'one pack-objects process in all');
    assert.equal(recording.generations.length, 1);
    assert.equal(seen.filter((r) => r === 'miss').length, 1);
    assert.equal(seen.length, 16);
    assert.ok(seen.includes('joined'), `lookups: ${seen.join(',')}`);
    for (const target of targets.slice(0, 3))
      await git(['fsck', '--strict', '--no-progress'], { cwd: target });
  });

  it('fails every clone when the generating pack-objects is killed, and the next generates afresh', async () => {
    const releaseFile = join(root, `release-${n}`);
    const recording = new RecordingGit({ stallAfterBytes: 64 * 1024, releaseFile });
    const cache = await startCache(recording);
    const targets = Array.from({ length: 4 }, (_, i) => join(root, `killed-${n}-${i}`));
    const clones = targets.map((t) =>
      run(['clone', '--bare', '--no-local', ...cache.client.args, bare, t], cache.client.env),
    );
    await waitFor('a generation in progress', () => recording.generations.length === 1, 20_000);
    await waitFor('all four clients reading', () => cache.cache.stats().readers === 4, 20_000);
    process.kill(await packObjectsPid(recording.generations[0]!), 'SIGKILL');
    await writeFile(releaseFile, '');
    const results = await Promise.all(clones);
    for (const result of results) {
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /remote: gitmirror: pack generation failed: .*exited with 137/);
    }
    for (const target of targets) assert.equal(await readdir(target).catch(() => 'absent'), 'absent');
    await waitFor('nothing held', () => cache.cache.bytesHeld === 0);
    const retry = join(root, `retry-${n}`);
    await git(['clone', '--bare', '--no-local', ...cache.client.args, bare, retry], {
      env: cache.client.env,
    });
    await git(['fsck', '--strict', '--no-progress'], { cwd: retry });
    assert.equal(recording.generations.length, 2);
  });

  it('fails every clone when the process holding the cache is killed, and the restart generates afresh', async () => {
    const dir = join(root, `host-${++n}`);
    const releaseFile = join(root, `host-release-${n}`);
    const generations: number[] = [];
    const host = await startHost({ dir, repo: bare, stallAfterBytes: 64 * 1024, releaseFile }, generations);
    const client = through(host.hooks, trace);
    const targets = Array.from({ length: 3 }, (_, i) => join(root, `orphaned-${n}-${i}`));
    const clones = targets.map((t) =>
      run(['clone', '--bare', '--no-local', ...client.args, bare, t], client.env),
    );
    await waitFor('a generation in progress', () => generations.length === 1, 20_000);
    await waitFor('its first bytes on disk', async () => (await readdir(join(dir, 'packs'))).length === 1);
    host.child.kill('SIGKILL');
    const results = await Promise.all(clones);
    for (const result of results) {
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /remote: gitmirror: the pack cache went away before the pack was complete/);
    }
    for (const target of targets) assert.equal(await readdir(target).catch(() => 'absent'), 'absent');
    for (const pgid of generations) process.kill(-pgid, 'SIGKILL');
    const restarted = await startHost({ dir, repo: bare }, generations);
    assert.deepEqual(await readdir(join(dir, 'packs')), [], 'the half-written entry was swept');
    const retry = join(root, `after-restart-${n}`);
    const again = through(restarted.hooks, trace);
    await git(['clone', '--bare', '--no-local', ...again.args, bare, retry], { env: again.env });
    await git(['fsck', '--strict', '--no-progress'], { cwd: retry });
    assert.equal(generations.length, 2, 'the restart generated afresh');
    restarted.child.kill('SIGKILL');
    await writeFile(releaseFile, '');
  });

  it('falls back to pack-objects when no sidecar answers or the repository is not a mirror', async () => {
    const before = await packObjectsRuns();
    const nowhere = through(
      { uploadPackArgs: uploadPackHookArgs(), env: { GITMIRROR_PACK_CACHE_SOCKET: join(root, 'no.sock') } },
      trace,
    );
    await git(['clone', '--bare', '--no-local', ...nowhere.args, bare, join(root, `nowhere-${n}`)], {
      env: nowhere.env,
    });
    const cache = await startCache();
    const other = join(root, 'other.git');
    await git(['clone', '--bare', '--quiet', bare, other]);
    await git(['clone', '--bare', '--no-local', ...cache.client.args, other, join(root, `other-${n}`)], {
      env: cache.client.env,
    });
    assert.equal((await packObjectsRuns()) - before, 2, 'each ran its own pack-objects');
    assert.equal(cache.cache.bytesHeld, 0);
  });

  it('splices the pack into the response of a ticketed upload-pack, v2 and v0, as upload-pack would have', async () => {
    const cache = await startCache();
    const tips = [
      ...new Set((await git(['for-each-ref', '--format=%(objectname)'], { cwd: bare })).trim().split('\n')),
    ];
    const v2 =
      pktLine('command=fetch\n') +
      '0001' +
      tips.map((t) => pktLine(`want ${t}\n`)).join('') +
      pktLine('ofs-delta\n') +
      pktLine('done\n') +
      '0000';
    const v0 =
      pktLine(`want ${tips[0]} side-band-64k ofs-delta\n`) +
      tips
        .slice(1)
        .map((t) => pktLine(`want ${t}\n`))
        .join('') +
      '0000' +
      pktLine('done\n');
    const packs: Buffer[] = [];
    for (const [protocol, request, marker] of [
      ['version=2', v2, '000dpackfile\n'],
      ['', v0, '0008NAK\n'],
    ] as const) {
      const ticket = cache.hooks.expectSplice();
      const child = spawn('git', [...cache.hooks.uploadPackArgs(), 'upload-pack', '--stateless-rpc', bare], {
        env: { ...GIT_ENV, GIT_PROTOCOL: protocol, ...cache.hooks.env(), ...ticket.env },
      });
      child.stdin.end(request);
      const done = once(child, 'exit').then(([code]) => assert.equal(code, 0));
      const chunks: Buffer[] = [];
      const out = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(Buffer.from(chunk));
          callback();
        },
      });
      const spliced = await relaySplicing({ stdout: child.stdout, done, out, ticket, keepaliveMs: 5_000 });
      assert.ok(spliced, 'the hook handed the pack over');
      const response = Buffer.concat(chunks);
      const start = response.indexOf(marker) + marker.length;
      assert.ok(start > marker.length - 1);
      assert.ok(response.subarray(-4).equals(Buffer.from('0000')), 'the flush comes last');
      const pack = bandOne(response.subarray(start, response.length - 4));
      assert.equal(pack.length, spliced.bytes);
      packs.push(pack);
    }
    assert.ok(packs[0]!.equals(packs[1]!), 'v0 and v2 asked pack-objects the same: one entry');
    const index = join(root, `spliced-${n}`);
    await git(['init', '--quiet', '--bare', index]);
    const indexing = execFile('git', ['index-pack', '--stdin', '--strict'], { cwd: index, env: GIT_ENV });
    indexing.stdin?.end(packs[0]);
    await once(indexing, 'exit');
    assert.deepEqual(await objectsOf(index), await objectsOf(bare));
  });

  it('answers anything that is not a hook request with a bypass, and serves nothing', async () => {
    const cache = await startCache();
    const socketPath = cache.hooks.env().GITMIRROR_PACK_CACHE_SOCKET!;
    // The request stays open, as a hook's does until it has its answer.
    const ask = async (bytes: string) => {
      const socket = connect(socketPath);
      socket.write(bytes);
      let text = '';
      for await (const chunk of socket) text += chunk;
      return text;
    };
    const header = (over: object) =>
      `${JSON.stringify({ v: 1, dir: bare, args: ['git', 'pack-objects', '--revs', '--stdout'], stdinBytes: 0, ...over })}\n`;
    for (const request of [
      'not json\n',
      header({ v: 2 }),
      header({ dir: 'relative' }),
      header({ args: ['git', 'pack-objects', '--revs', '--stdout', '--all'] }),
      header({ args: ['sh', '-c', 'true'] }),
      header({ dir: '/' }),
      header({ stdinBytes: 1 << 30 }),
    ]) {
      const answer = await ask(request);
      assert.ok(answer.endsWith('\n') && answer.indexOf('\n') === answer.length - 1, answer);
      assert.equal(JSON.parse(answer).t, 'bypass', `${request} -> ${answer}`);
    }
    assert.equal(cache.cache.bytesHeld, 0);
  });

  it('keeps a client that joined a slow generation alive with keepalives and tells it so', async () => {
    const recording = new RecordingGit({ startDelay: 3 });
    const cache = await startCache(recording);
    const tips = (await git(['for-each-ref', '--format=%(objectname)'], { cwd: bare })).trim().split('\n');
    const request =
      pktLine('command=fetch\n') +
      '0001' +
      [...new Set(tips)].map((t) => pktLine(`want ${t}\n`)).join('') +
      pktLine('ofs-delta\n') +
      pktLine('done\n') +
      '0000';
    const uploadPack = () =>
      rawUploadPack(
        [
          '-c',
          'uploadpack.keepAlive=1',
          ...cache.hooks.uploadPackArgs(),
          'upload-pack',
          '--stateless-rpc',
          bare,
        ],
        request,
        {
          ...cache.hooks.env(),
        },
      );
    const leader = uploadPack();
    await waitFor('the generation started', () => recording.generations.length === 1, 20_000);
    const follower = await uploadPack();
    await leader;
    const packfile = follower.indexOf('packfile\n');
    const packData = follower.indexOf('\x01PACK', packfile);
    assert.ok(packfile > 0 && packData > packfile);
    const beforeData = follower.subarray(packfile, packData).toString('latin1');
    assert.ok(beforeData.includes('0005\x01'), 'keepalive packets while waiting');
    assert.ok(
      beforeData.includes('\x02gitmirror: joined a pack generation already under way'),
      'progress says so',
    );
    assert.equal(recording.generations.length, 1);
  });
});

/** Cache hosts still running after a test, killed when it ends (a failed test included). */
const hosts = new Set<ChildProcess>();

/** The band-1 data of a side-band stream (every packet must be one). */
function bandOne(stream: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < stream.length; ) {
    const length = Number.parseInt(stream.subarray(at, at + 4).toString('latin1'), 16);
    assert.ok(length >= 5 && length <= 65520, `packet of ${length} bytes at ${at}`);
    if (stream[at + 4] === 1) parts.push(stream.subarray(at + 5, at + length));
    at += length;
  }
  return Buffer.concat(parts);
}

function rawUploadPack(args: string[], request: string, env: Record<string, string>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, { env: { ...GIT_ENV, GIT_PROTOCOL: 'version=2', ...env } });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stdin.end(request);
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`upload-pack exited ${code}`)),
    );
  });
}

async function startHost(
  options: { dir: string; repo: string; stallAfterBytes?: number; releaseFile?: string },
  generations: number[],
): Promise<{ child: ChildProcess; hooks: { uploadPackArgs: string[]; env: Record<string, string> } }> {
  const child = spawn(process.execPath, [HOST, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  hosts.add(child);
  const lines = createInterface({ input: child.stdout! });
  let hooks: { uploadPackArgs: string[]; env: Record<string, string> } | undefined;
  const ready = new Promise<void>((resolve) => {
    lines.on('line', (line) => {
      const message = JSON.parse(line) as {
        generation?: number;
        uploadPackArgs?: string[];
        env?: Record<string, string>;
      };
      if (message.generation) generations.push(message.generation);
      if (message.uploadPackArgs) {
        hooks = { uploadPackArgs: message.uploadPackArgs, env: message.env! };
        resolve();
      }
    });
  });
  await Promise.race([ready, once(child, 'exit').then(() => Promise.reject(new Error('cache host exited')))]);
  return { child, hooks: hooks! };
}
