import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo, objectsOf, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { metricValue, scrape } from '../../../testing/metrics.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import { pktLine } from '../../src/http/pkt-line.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';
import { createPackRepo, packObjectsPid, packObjectsStarted, RecordingGit } from './fixtures.ts';

/**
 * The pack cache as clients meet it: real git clients against an in-process sidecar that
 * mirrors a real upstream and runs real upload-pack, its hook and pack-objects (through a
 * RecordingGit that can hold a generation up). pack-objects runs are counted from git's own
 * trace2 events, every one of them: the cache's generations and any the hook ran itself.
 */

/** Runs git to completion; a failure is returned, not thrown. */
function run(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('git', args, { env: GIT_ENV }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
    child.stdin?.end();
  });
}

interface CachingSidecar {
  sidecar: RunningSidecar;
  url: string;
  dataDir: string;
  /** `gitmirror_pack_cache_<name>` as the sidecar reports it now. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

/** A sidecar holding `repo` of `upstream`, ready, with its own data dir under `root`. */
async function startCachingSidecar(options: {
  root: string;
  upstream: GitUpstream;
  repo: string;
  git?: RecordingGit;
  env?: Record<string, string>;
}): Promise<CachingSidecar> {
  const dataDir = await tempDir('gitmirror-pack-cache-sidecar-');
  const sidecar = await startTestSidecar(
    {
      GITMIRROR_DATA_DIR: dataDir,
      GITMIRROR_MIRRORS: options.upstream.url(`${options.repo}.git`),
      GITMIRROR_HTTP_HOSTS: options.upstream.host,
      ...options.env,
    },
    options.git ? { git: options.git } : {},
  );
  await waitFor('mirror ready', () => sidecar.isReady(), { timeoutMs: 60_000 });
  return {
    sidecar,
    dataDir,
    url: `${sidecar.gitUrl}/git/${options.upstream.host}/${options.repo}.git`,
    metric: async (name, labels = {}) =>
      metricValue(await scrape(sidecar.adminUrl), `gitmirror_pack_cache_${name}`, labels) ?? Number.NaN,
  };
}

async function stop(cache: CachingSidecar | undefined): Promise<void> {
  await cache?.sidecar.shutdown();
  if (cache) await removeDir(cache.dataDir);
}

describe('clones and fetches through a sidecar with the pack cache', () => {
  let root: string;
  let bare: string;
  let work: string;
  let upstream: GitUpstream;
  let cache: CachingSidecar;
  let trace: string;
  let recording: RecordingGit;
  let n = 0;

  before(async () => {
    root = await tempDir();
    ({ bare, work } = await createPackRepo(join(root, 'upstream', 'org')));
    upstream = await startGitUpstream(join(root, 'upstream'));
    trace = join(root, 'trace2.json');
    recording = new RecordingGit({ env: { GIT_TRACE2_EVENT: trace } });
    cache = await startCachingSidecar({ root, upstream, repo: 'org/repo', git: recording });
  });
  after(async () => {
    await stop(cache);
    await upstream.close();
    await removeDir(root);
  });

  const lookups = async () =>
    (await cache.metric('requests_total', { result: 'miss' })) +
    (await cache.metric('requests_total', { result: 'joined' })) +
    (await cache.metric('requests_total', { result: 'hit' }));

  const variants: [string, string[]][] = [
    ['protocol v0', ['-c', 'protocol.version=0', 'clone', '--bare']],
    ['protocol v1', ['-c', 'protocol.version=1', 'clone', '--bare']],
    ['protocol v2', ['-c', 'protocol.version=2', 'clone', '--bare']],
    ['--filter=blob:none', ['-c', 'protocol.version=2', 'clone', '--bare', '--filter=blob:none']],
    ['--depth 1', ['-c', 'protocol.version=2', 'clone', '--bare', '--depth', '1']],
    ['--depth 1, protocol v0', ['-c', 'protocol.version=0', 'clone', '--bare', '--depth', '1']],
  ];
  for (const [name, args] of variants) {
    it(`${name}: a pack from the cache has the refs and objects of a clone from upstream, fsck clean`, async () => {
      const plain = join(root, `plain-${++n}`);
      await git([...args, '--no-local', bare, plain]);
      const [first, second] = [join(root, `first-${n}`), join(root, `second-${n}`)];
      const before = await lookups();
      await git([...args, cache.url, first]);
      assert.equal(await lookups(), before + 1, 'the pack went through the cache');
      const hits = await cache.metric('requests_total', { result: 'hit' });
      const generations = await packObjectsStarted(trace);
      assert.ok(generations > 0, 'the trace counts pack-objects runs');
      await git([...args, cache.url, second]);
      assert.equal(await cache.metric('requests_total', { result: 'hit' }), hits + 1, 'served from disk');
      assert.equal(await packObjectsStarted(trace), generations, 'no pack-objects ran for it');
      for (const target of [first, second]) {
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
    const clones = [join(root, `fetch-a-${++n}`), join(root, `fetch-b-${n}`)];
    for (const target of clones) await git(['clone', '--bare', '--quiet', cache.url, target]);
    const tip = await addCommit(work, `late-${n}.txt`, 'late\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const fetched = await fetch(
      `${cache.sidecar.adminUrl}/v1/mirrors/${upstream.host}/org/repo/fetch?wait=true`,
      {
        method: 'POST',
      },
    );
    assert.equal(fetched.status, 200);
    const misses = await cache.metric('requests_total', { result: 'miss' });
    const hits = await cache.metric('requests_total', { result: 'hit' });
    for (const target of clones) {
      await git(['fetch', '--quiet', cache.url, 'main:main'], { cwd: target });
      assert.equal((await git(['rev-parse', 'main'], { cwd: target })).trim(), tip);
      await git(['fsck', '--strict', '--no-progress'], { cwd: target });
    }
    assert.equal(await cache.metric('requests_total', { result: 'miss' }), misses + 1);
    assert.equal(await cache.metric('requests_total', { result: 'hit' }), hits + 1);
  });

  it('runs pack-objects once for 16 concurrent identical clones', async () => {
    // A commit no earlier test cloned, so the 16 start from an empty entry.
    await addCommit(work, `fan-out-${++n}.txt`, 'fan out\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    await cache.sidecar.mirrors.fetch(cache.sidecar.mirrors.get(`${upstream.host}/org/repo`)!);
    const before = await packObjectsStarted(trace);
    const joinedBefore = await cache.metric('requests_total', { result: 'joined' });
    const targets = Array.from({ length: 16 }, (_, i) => join(root, `fan-out-${n}-${i}`));
    // pack-objects starts a second late, so the 16 surely meet while it runs.
    const hold = recording.hold;
    recording.hold = { ...hold, startDelay: 1 };
    const results = await Promise.all(targets.map((t) => run(['clone', '--bare', '--quiet', cache.url, t])));
    recording.hold = hold;
    assert.deepEqual(
      results.map((r) => r.code),
      new Array(16).fill(0),
      results.map((r) => r.stderr).join('\n'),
    );
    assert.equal((await packObjectsStarted(trace)) - before, 1, 'one pack-objects process in all');
    assert.ok((await cache.metric('requests_total', { result: 'joined' })) > joinedBefore, 'some joined it');
    for (const target of targets) await git(['fsck', '--strict', '--no-progress'], { cwd: target });
  });

  it('serves a client without side-band-64k by upload-pack alone, counted as a bypass', async () => {
    const tip = (await git(['rev-parse', 'main'], { cwd: bare })).trim();
    const bypassed = await cache.metric('bypasses_total', { reason: 'no_sideband' });
    const res = await fetch(`${cache.url}/git-upload-pack`, {
      method: 'POST',
      body: `${pktLine(`want ${tip} ofs-delta\n`)}0000${pktLine('done\n')}`,
      headers: { 'Content-Type': 'application/x-git-upload-pack-request' },
    });
    assert.equal(res.status, 200);
    assert.equal(
      Buffer.from(await res.arrayBuffer())
        .subarray(0, 12)
        .toString(),
      '0008NAK\nPACK',
    );
    assert.equal(await cache.metric('bypasses_total', { reason: 'no_sideband' }), bypassed + 1);
  });
});

describe('a pack cache generation killed in the middle', () => {
  let root: string;
  let upstream: GitUpstream;
  let cache: CachingSidecar;
  const recording = new RecordingGit();

  before(async () => {
    root = await tempDir();
    await createPackRepo(join(root, 'upstream', 'org'));
    upstream = await startGitUpstream(join(root, 'upstream'));
    cache = await startCachingSidecar({ root, upstream, repo: 'org/repo', git: recording });
  });
  after(async () => {
    await writeFile(join(root, 'release'), '');
    await stop(cache);
    await upstream.close();
    await removeDir(root);
  });

  it('fails every clone reading it, keeps nothing, and the next identical clone generates afresh', async () => {
    const releaseFile = join(root, 'release');
    recording.hold = { stallAfterBytes: 64 * 1024, releaseFile };
    const targets = Array.from({ length: 4 }, (_, i) => join(root, `killed-${i}`));
    const clones = targets.map((t) => run(['clone', '--bare', cache.url, t]));
    await waitFor('a generation in progress', () => recording.generations.length === 1, {
      timeoutMs: 20_000,
    });
    await waitFor('all four clients reading it', async () => (await lookupsOf(cache)) === 4, {
      timeoutMs: 20_000,
    });
    process.kill(await packObjectsPid(recording.generations[0]!), 'SIGKILL');
    await writeFile(releaseFile, '');
    for (const result of await Promise.all(clones)) {
      assert.notEqual(result.code, 0, 'no clone succeeds');
      assert.match(result.stderr, /remote: gitmirror: pack generation failed: .*exited with 137/);
    }
    for (const target of targets) assert.equal(await readdir(target).catch(() => 'absent'), 'absent');
    assert.equal(await cache.metric('generations_total', { outcome: 'failed' }), 1);
    await waitFor('nothing held', async () => (await cache.metric('bytes')) === 0);
    assert.deepEqual(await readdir(join(cache.dataDir, 'pack-cache')), []);
    const retry = join(root, 'retry');
    await git(['clone', '--bare', '--quiet', cache.url, retry]);
    await git(['fsck', '--strict', '--no-progress'], { cwd: retry });
    assert.equal(recording.generations.length, 2, 'the retry generated afresh');
    assert.equal(await cache.metric('requests_total', { result: 'miss' }), 2);
  });
});

async function lookupsOf(cache: CachingSidecar): Promise<number> {
  let total = 0;
  for (const result of ['miss', 'joined', 'hit']) total += await cache.metric('requests_total', { result });
  return total;
}

describe('the pack cache budget under a flood of distinct requests', () => {
  let root: string;
  let upstream: GitUpstream;
  let cache: CachingSidecar;
  const maxBytes = 200 * 1024;

  before(async () => {
    root = await tempDir();
    await createPackRepo(join(root, 'upstream', 'org'));
    upstream = await startGitUpstream(join(root, 'upstream'));
    cache = await startCachingSidecar({
      root,
      upstream,
      repo: 'org/repo',
      env: { GITMIRROR_PACK_CACHE_MAX_BYTES: String(maxBytes) },
    });
  });
  after(async () => {
    await stop(cache);
    await upstream.close();
    await removeDir(root);
  });

  it('stays within GITMIRROR_PACK_CACHE_MAX_BYTES but for generations already running, and every clone is whole', async () => {
    const dir = join(cache.dataDir, 'pack-cache');
    // 5 branches x 2 depths x 2 filters: 20 distinct packs of a few to ~350 KiB.
    const requests = ['main', 'feature', 'alpha', 'beta', 'gamma'].flatMap((branch) =>
      ['1', '2'].flatMap((depth) =>
        [[], ['--filter=blob:none']].map((filter) => [
          'clone',
          '--bare',
          '--quiet',
          '--single-branch',
          '--branch',
          branch,
          '--depth',
          depth,
          ...filter,
        ]),
      ),
    );
    let peak = 0;
    let largest = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const sizes = await fileSizes(dir);
        peak = Math.max(
          peak,
          sizes.reduce((a, b) => a + b, 0),
        );
        largest = Math.max(largest, ...sizes);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const clients = 4;
    const queue = requests.map((args, i) => ({ args, target: join(root, `flood-${i}`) }));
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) {
          const result = await run([...next.args, cache.url, next.target]);
          if (result.code !== 0) failures.push(`${next.args.join(' ')}: ${result.stderr}`);
          else await git(['fsck', '--strict', '--no-progress'], { cwd: next.target });
        }
      }),
    );
    sampling = false;
    await sampler;
    assert.deepEqual(failures, []);
    const evicted = await cache.metric('evictions_total', { reason: 'budget' });
    const bypassed = await cache.metric('bypasses_total', { reason: 'budget' });
    assert.ok(evicted + bypassed > 0, 'the budget was reached');
    await waitFor('within the budget', async () => (await cache.metric('bytes')) <= maxBytes);
    const onDisk = (await fileSizes(dir)).reduce((a, b) => a + b, 0);
    assert.ok(onDisk <= maxBytes, `${onDisk} bytes on disk`);
    // Only generations already running when the budget filled can take it past the limit.
    assert.ok(peak <= maxBytes + clients * largest, `peak ${peak}, largest pack ${largest}`);
  });
});

async function fileSizes(dir: string): Promise<number[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(
    names.map((name) =>
      stat(join(dir, name)).then(
        (s) => s.size,
        () => 0,
      ),
    ),
  );
}

describe('the pack cache behind access checks and mirror removal', () => {
  const PASSWORD = 'pack-cache-test-secret';
  let root: string;
  let bare: string;
  let upstream: GitUpstream;
  let cache: CachingSidecar;
  const asBot = {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'credential.helper',
    GIT_CONFIG_VALUE_0: `!f() { echo username=bot; echo password=${PASSWORD}; }; f`,
  };

  before(async () => {
    root = await tempDir();
    ({ bare } = await createUpstreamRepo(join(root, 'upstream', 'corp'), 'repo', 8));
    upstream = await startGitUpstream(join(root, 'upstream'), {
      basicAuth: { user: 'bot', password: PASSWORD },
    });
    const credentials = join(root, 'credentials');
    await writeFile(credentials, `http://bot:${PASSWORD}@${upstream.host}/corp\n`, { mode: 0o600 });
    cache = await startCachingSidecar({
      root,
      upstream,
      repo: 'corp/repo',
      env: { GITMIRROR_CREDENTIALS_FILE: credentials },
    });
  });
  after(async () => {
    await stop(cache);
    await upstream.close();
    await removeDir(root);
  });

  it('checks Private access for every client before any byte of a cached pack', async () => {
    await git(['clone', '--bare', '--quiet', cache.url, join(root, 'warm')], { env: asBot });
    const tips = [
      ...new Set((await git(['for-each-ref', '--format=%(objectname)'], { cwd: bare })).trim().split('\n')),
    ];
    const body = `${pktLine('command=fetch\n')}0001${tips.map((t) => pktLine(`want ${t}\n`)).join('')}${pktLine('ofs-delta\n')}${pktLine('done\n')}0000`;
    const post = (authorization?: string) =>
      fetch(`${cache.url}/git-upload-pack`, {
        method: 'POST',
        body,
        headers: {
          'Content-Type': 'application/x-git-upload-pack-request',
          'Git-Protocol': 'version=2',
          ...(authorization ? { Authorization: authorization } : {}),
        },
      });
    const basic = (password: string) => `Basic ${Buffer.from(`bot:${password}`).toString('base64')}`;
    const before = await lookupsOf(cache);
    const anonymous = await post();
    assert.equal(anonymous.status, 401);
    assert.doesNotMatch(await anonymous.text(), /PACK/);
    const wrong = await post(basic('wrong'));
    assert.equal(wrong.status, 403);
    assert.doesNotMatch(await wrong.text(), /PACK/);
    assert.equal(await lookupsOf(cache), before, 'the cache was not even asked');
    const allowed = await post(basic(PASSWORD));
    assert.equal(allowed.status, 200);
    assert.ok(Buffer.from(await allowed.arrayBuffer()).includes('\x01PACK'), 'a pack on side-band 1');
    assert.equal(await lookupsOf(cache), before + 1);
  });

  it('deletes the packs of a removed mirror', async () => {
    const packs = join(cache.dataDir, 'pack-cache');
    const entries = (await readdir(packs)).length;
    assert.ok(entries > 0);
    const removed = await fetch(`${cache.sidecar.adminUrl}/v1/mirrors/${upstream.host}/corp/repo`, {
      method: 'DELETE',
    });
    assert.equal(removed.status, 204);
    await waitFor('packs deleted', async () => (await readdir(packs)).length === 0);
    assert.equal(await cache.metric('evictions_total', { reason: 'mirror_removed' }), entries);
    assert.equal(await cache.metric('bytes'), 0);
  });
});

describe('serving with the pack cache off', () => {
  it('runs upload-pack as before with GITMIRROR_PACK_CACHE_MAX_BYTES=0', async () => {
    const root = await tempDir();
    const { bare } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 3);
    const upstream = await startGitUpstream(join(root, 'upstream'));
    const cache = await startCachingSidecar({
      root,
      upstream,
      repo: 'org/repo',
      env: { GITMIRROR_PACK_CACHE_MAX_BYTES: '0' },
    });
    try {
      const target = join(root, 'c');
      await git(['clone', '--bare', '--quiet', cache.url, target]);
      assert.deepEqual(await objectsOf(target), await objectsOf(bare));
      assert.equal(await cache.metric('budget_bytes'), 0);
      assert.equal(await lookupsOf(cache), 0);
      assert.equal(await readdir(join(cache.dataDir, 'pack-cache')).catch(() => 'absent'), 'absent');
    } finally {
      await stop(cache);
      await upstream.close();
      await removeDir(root);
    }
  });
});
