import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { commitLfsFiles, lfsEnvironment } from '../../../testing/lfs-client.ts';
import { type LfsUpstream, startLfsUpstream } from '../../../testing/lfs-upstream.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { LfsKeyring } from '../../src/lfs/url-token.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';
import { startLfsApp } from './lfs-app.ts';
import { metricValue, randomContent } from './support.ts';

const exec = promisify(execFile);
type App = Awaited<ReturnType<typeof startLfsApp>>;

describe('the LFS API through the cache, driven by git-lfs', () => {
  let root: string;
  let upstream: LfsUpstream;
  let mirrorDir: string;
  let homes: Record<'good' | 'none' | 'wrong', NodeJS.ProcessEnv>;
  let files: Record<string, Buffer>;
  let ids: Awaited<ReturnType<typeof commitLfsFiles>>;
  const keyring = LfsKeyring.fromSecret('fleet secret');
  const apps: App[] = [];

  /** A client: clone (git from upstream, LFS content skipped), point LFS at the cache, pull. */
  async function pullThrough(app: App, name: string, env: NodeJS.ProcessEnv, repo = 'org/repo') {
    const dir = join(root, 'clients', name);
    await git(['clone', '--quiet', upstream.url(`${repo}.git`), dir], {
      env: { ...env, GIT_LFS_SKIP_SMUDGE: '1' },
    });
    await git(['config', 'lfs.url', app.lfsUrl(`${upstream.host}/${repo}`)], { cwd: dir, env });
    await git(['config', 'lfs.transfer.maxretries', '1'], { cwd: dir, env });
    const pull = exec('git', ['lfs', 'pull'], { cwd: dir, env: { ...GIT_ENV, ...env } });
    return { dir, pull: pull.then(() => dir) };
  }

  async function sameFiles(dir: string) {
    for (const [name, content] of Object.entries(files))
      assert.ok((await readFile(join(dir, name))).equals(content), `${name} has the upstream content`);
  }

  async function credentialsFor(env: NodeJS.ProcessEnv, password: string | undefined, hosts: string[]) {
    const lines = password === undefined ? [] : hosts.map((h) => `http://user:${password}@${h}`);
    await writeFile(join(env.HOME!, 'credentials'), lines.join('\n'));
  }

  async function app(
    name: string,
    access: 'Public' | 'Private',
    options: { store?: FileSnapshotStore } = {},
  ) {
    const started = await startLfsApp({
      dataDir: join(root, name),
      httpHosts: [upstream.host],
      keyring,
      store: options.store,
      describe: (repo) => ({
        repo,
        upstream: upstream.url(`${repo.path}.git`),
        mirror: { access, dir: repo.path === 'org/repo' ? mirrorDir : undefined },
      }),
    });
    apps.push(started);
    const hosts = apps.map((a) => a.url.slice('http://'.length)).concat(upstream.host);
    await credentialsFor(homes.good, 'pass', hosts);
    await credentialsFor(homes.wrong, 'wrong', hosts);
    return started;
  }

  before(async () => {
    root = await tempDir('gitmirror-lfs-service-');
    upstream = await startLfsUpstream(join(root, 'upstream'), {
      credentials: { user: 'user', password: 'pass' },
    });
    homes = {
      good: await lfsEnvironment(join(root, 'home-good')),
      none: await lfsEnvironment(join(root, 'home-none')),
      wrong: await lfsEnvironment(join(root, 'home-wrong')),
    };
    await credentialsFor(homes.good, 'pass', [upstream.host]);
    await credentialsFor(homes.none, undefined, []);
    const { work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 2);
    await createUpstreamRepo(join(root, 'upstream', 'org'), 'other', 1);
    files = {
      'a.bin': randomContent(300_000),
      'b.bin': randomContent(2_000_000),
      'dir/c.bin': randomContent(10_000),
    };
    ids = await commitLfsFiles(work, files, homes.good);
    await git(['remote', 'set-url', 'origin', upstream.url('org/repo.git')], { cwd: work });
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work, env: homes.good });
    mirrorDir = join(root, 'mirror.git');
    await git(['clone', '--quiet', '--mirror', upstream.url('org/repo.git'), mirrorDir]);
  });

  after(async () => {
    for (const a of apps) await a.close();
    await upstream.close();
    await removeDir(root);
  });

  it('Public: a pull through the cache equals upstream, the next moves nothing from upstream, even when it is down', async () => {
    const cache = await app('public', 'Public');
    await sameFiles(await (await pullThrough(cache, 'public-1', homes.good)).pull);
    for (const { oid } of Object.values(ids)) assert.equal(upstream.downloads(oid), 1);
    await cache.cache.idle();

    const batches = upstream.batches.length;
    await sameFiles(await (await pullThrough(cache, 'public-2', homes.none)).pull);
    assert.equal(upstream.batches.length, batches, 'answered without asking upstream');
    for (const { oid } of Object.values(ids)) assert.equal(upstream.downloads(oid), 1);

    const third = await pullThrough(cache, 'public-3', homes.none);
    upstream.git.failWith(503);
    try {
      await sameFiles(await third.pull);
    } finally {
      upstream.git.failWith(undefined);
    }
    assert.equal(
      await metricValue(cache.registry, 'gitmirror_lfs_batch_requests_total', { outcome: 'local' }),
      2,
    );
    assert.equal(
      await metricValue(cache.registry, 'gitmirror_lfs_objects_served_total', { source: 'local' }),
      6,
    );
  });

  it('Private: upstream judges the credentials; a refused client gets its 401/403 and no bytes, even of cached objects', async () => {
    const cache = await app('private', 'Private');
    const none = await pullThrough(cache, 'private-none', homes.none);
    await assert.rejects(none.pull, /401|[Aa]uthori[sz]ation|credentials/);
    const wrongBefore = await pullThrough(cache, 'private-wrong-1', homes.wrong);
    // The stand-in's own 403 message: upstream's answer, relayed.
    await assert.rejects(wrongBefore.pull, /wrong credentials/);

    await sameFiles(await (await pullThrough(cache, 'private-good', homes.good)).pull);
    await cache.cache.idle();
    for (const { oid } of Object.values(ids)) assert.ok(cache.local.has(oid));
    const bytesServed = await metricValue(cache.registry, 'gitmirror_lfs_bytes_served_total', {});

    const wrong = await pullThrough(cache, 'private-wrong-2', homes.wrong);
    await assert.rejects(wrong.pull, /wrong credentials/);
    const pointer = await readFile(join(wrong.dir, 'a.bin'), 'utf8');
    assert.match(pointer, /^version https:\/\/git-lfs/, 'the refused client still has only the pointer');
    assert.equal(await metricValue(cache.registry, 'gitmirror_lfs_bytes_served_total', {}), bytesServed);

    // The good client's verdict is cached: its next pull is answered without upstream.
    const batches = upstream.batches.length;
    await sameFiles(await (await pullThrough(cache, 'private-good-2', homes.good)).pull);
    assert.equal(upstream.batches.length, batches);
  });

  it('an object held for one repository is not handed out for another that upstream does not give it for', async () => {
    const cache = await app('isolation', 'Public');
    await (await pullThrough(cache, 'isolation-1', homes.good)).pull;
    await cache.cache.idle();
    const object = ids['a.bin']!;
    const res = await batch(cache, `${upstream.host}/org/other`, [object], basic('user', 'pass'));
    assert.equal(res.status, 200);
    const answer = (await res.json()) as { objects: { error?: { code: number }; actions?: unknown }[] };
    assert.equal(answer.objects[0]!.error?.code, 404);
    assert.equal(answer.objects[0]!.actions, undefined);
  });

  it('git lfs push and git lfs locks through the cache reach upstream', async () => {
    const cache = await app('push', 'Public');
    const dir = join(root, 'clients', 'pusher');
    const env = homes.good;
    // Another repository, so the other tests' clones keep the same LFS files.
    await git(['clone', '--quiet', upstream.url('org/other.git'), dir], {
      env: { ...env, GIT_LFS_SKIP_SMUDGE: '1' },
    });
    await git(['config', 'lfs.url', cache.lfsUrl(`${upstream.host}/org/other`)], { cwd: dir, env });
    const pushed = await commitLfsFiles(dir, { 'new.bin': randomContent(50_000) }, env, 'more');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: dir, env });
    assert.ok(upstream.has('org/other', pushed['new.bin']!.oid));
    assert.ok(
      upstream.batches.some((b) => b.operation === 'upload' && b.oids.includes(pushed['new.bin']!.oid)),
    );
    assert.equal(
      await metricValue(cache.registry, 'gitmirror_lfs_batch_requests_total', { operation: 'upload' }),
      1,
    );
    const locks = upstream.lockRequests;
    await git(['lfs', 'locks'], { cwd: dir, env });
    assert.ok(upstream.lockRequests > locks);
  });

  it('object URLs: Content-Length, Range, ETag, HEAD; a changed or foreign token is refused', async () => {
    const cache = await app('urls', 'Public');
    const object = ids['b.bin']!;
    const res = await batch(cache, `${upstream.host}/org/repo`, [object], basic('user', 'pass'));
    const href = ((await res.json()) as { objects: { actions: { download: { href: string } } }[] })
      .objects[0]!.actions.download.href;
    assert.ok(
      href.startsWith(`${cache.url}/git/${upstream.host}/org/repo.git/info/lfs/objects/${object.oid}?token=`),
    );
    const whole = await fetch(href);
    assert.equal(whole.headers.get('content-length'), String(object.size));
    assert.equal(whole.headers.get('etag'), `"${object.oid}"`);
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(files['b.bin']!));
    const part = await fetch(href, { headers: { range: 'bytes=100-199' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 100-199/${object.size}`);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(files['b.bin']!.subarray(100, 200)));
    assert.equal((await fetch(href, { headers: { 'if-none-match': `"${object.oid}"` } })).status, 304);
    assert.equal((await fetch(href, { headers: { range: `bytes=${object.size}-` } })).status, 416);
    const head = await fetch(href, { method: 'HEAD' });
    assert.equal(head.headers.get('content-length'), String(object.size));
    const at = href.length - 3;
    const tampered = `${href.slice(0, at)}${href[at] === 'A' ? 'B' : 'A'}${href.slice(at + 1)}`;
    const refused = await fetch(tampered);
    assert.equal(refused.status, 403);
    assert.match(((await refused.json()) as { message: string }).message, /invalid object token/);
    const elsewhere = await fetch(href.replace('/org/repo.git/', '/org/other.git/'));
    assert.equal(elsewhere.status, 403);
  });

  it('refuses bad batch requests with the status the batch API names', async () => {
    const cache = await app('bad-requests', 'Public');
    const repo = `${upstream.host}/org/repo`;
    const post = (body: string) =>
      fetch(`${cache.lfsUrl(repo)}/objects/batch`, {
        method: 'POST',
        headers: {
          accept: 'application/vnd.git-lfs+json',
          'content-type': 'application/vnd.git-lfs+json',
          authorization: basic('user', 'pass'),
        },
        body,
      });
    assert.equal((await post('{not json')).status, 400);
    assert.equal((await post('{"operation":"delete","objects":[]}')).status, 422);
    const many = Array.from({ length: 1001 }, () => ({ oid: 'a'.repeat(64), size: 1 }));
    assert.equal((await post(JSON.stringify({ operation: 'download', objects: many }))).status, 413);
    const mixed = await post(
      JSON.stringify({
        operation: 'download',
        objects: [{ oid: '../../etc/passwd', size: 1 }, ids['dir/c.bin']],
      }),
    );
    assert.equal(mixed.status, 200);
    const answer = (await mixed.json()) as { objects: { error?: { code: number }; actions?: unknown }[] };
    assert.equal(answer.objects[0]!.error?.code, 422);
    assert.ok(answer.objects[1]!.actions || answer.objects[1]!.error);
    const badHost = await new Promise<number>((resolve, reject) => {
      const req = request(`${cache.lfsUrl(repo)}/objects/batch`, {
        method: 'POST',
        headers: { host: 'evil.example/x?', 'content-type': 'application/vnd.git-lfs+json' },
      });
      req.on('response', (r) => resolve(r.statusCode ?? 0)).on('error', reject);
      req.end(JSON.stringify({ operation: 'download', objects: [] }));
    });
    assert.equal(badHost, 400);
  });

  it('an upstream object that does not match its oid fails the pull and is not kept; a later pull fetches it again', async () => {
    const cache = await app('corrupt', 'Public');
    const object = ids['dir/c.bin']!;
    upstream.fault(object.oid, 'corrupt');
    const before = upstream.downloads(object.oid);
    try {
      await assert.rejects((await pullThrough(cache, 'corrupt-1', homes.good)).pull);
    } finally {
      upstream.fault(object.oid, undefined);
    }
    await cache.cache.idle();
    assert.equal(cache.local.has(object.oid), false);
    const during = upstream.downloads(object.oid);
    assert.ok(during > before);
    await sameFiles(await (await pullThrough(cache, 'corrupt-2', homes.good)).pull);
    assert.equal(upstream.downloads(object.oid), during + 1);
  });

  it('replicas share objects through the store, and any replica serves a URL another handed out', async () => {
    const store = new FileSnapshotStore(join(root, 'shared-store'));
    const a = await app('replica-a', 'Public', { store });
    const b = await app('replica-b', 'Public', { store });
    const object = ids['a.bin']!;
    const repo = `${upstream.host}/org/repo`;
    const before = upstream.downloads(object.oid);
    // A answers the batch (asking upstream), B serves the GET: it uses upstream's action sealed in the URL.
    const res = await batch(a, repo, [object], basic('user', 'pass'));
    const href = ((await res.json()) as { objects: { actions: { download: { href: string } } }[] })
      .objects[0]!.actions.download.href;
    const fromB = await fetch(href.replace(a.url, b.url));
    assert.ok(Buffer.from(await fromB.arrayBuffer()).equals(files['a.bin']!));
    assert.equal(upstream.downloads(object.oid), before + 1);
    await b.cache.idle();
    // A new replica (new data dir, same store) serves a whole pull without upstream LFS bytes.
    const c = await app('replica-c', 'Public', { store });
    await (await pullThrough(b, 'replica-pull', homes.good)).pull;
    await b.cache.idle();
    const downloads = Object.values(ids).map(({ oid }) => upstream.downloads(oid));
    await sameFiles(await (await pullThrough(c, 'replica-c-pull', homes.good)).pull);
    assert.deepEqual(
      Object.values(ids).map(({ oid }) => upstream.downloads(oid)),
      downloads,
    );
    assert.equal(await metricValue(c.registry, 'gitmirror_lfs_upstream_bytes_total'), 0);
    assert.equal(await metricValue(c.registry, 'gitmirror_lfs_objects_served_total', { source: 'store' }), 3);
  });
});

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

function batch(app: App, repo: string, objects: { oid: string; size: number }[], authorization?: string) {
  return fetch(`${app.lfsUrl(repo)}/objects/batch`, {
    method: 'POST',
    headers: {
      accept: 'application/vnd.git-lfs+json',
      'content-type': 'application/vnd.git-lfs+json',
      ...(authorization ? { authorization } : {}),
    },
    body: JSON.stringify({ operation: 'download', transfers: ['basic'], objects }),
  });
}
