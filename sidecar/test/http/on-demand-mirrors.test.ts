import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Logger } from 'pino';
import type { MirrorList } from '../../../core/admin-api.ts';
import { capturingLogger } from '../../../testing/capturing-logger.ts';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

/**
 * A mirror is created on demand only after upstream has shown the repository to the client
 * (info/refs: 200 with a git advertisement), and at most GITMIRROR_MAX_ON_DEMAND_MIRRORS of
 * them; every other request is relayed to upstream and leaves no entry, clone or directory.
 */

const BOT = { user: 'bot', password: 'client-secret' };
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A git client whose credential helper answers with `BOT`, as CI would configure it. */
const withCredentials = {
  env: {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'credential.helper',
    GIT_CONFIG_VALUE_0: `!f() { echo username=${BOT.user}; echo password=${BOT.password}; }; f`,
  },
};

async function listTree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

async function mirrorList(sidecar: RunningSidecar): Promise<MirrorList> {
  const res = await fetch(`${sidecar.adminUrl}/v1/mirrors`);
  assert.equal(res.status, 200);
  return (await res.json()) as MirrorList;
}

const infoRefs = (sidecar: RunningSidecar, id: string) =>
  `${sidecar.gitUrl}/git/${id}.git/info/refs?service=git-upload-pack`;

/** Requests the sidecar made upstream on its own behalf (clones, fetches), not relaying a client. */
const ownRequests = (upstream: GitUpstream, path: string) =>
  upstream.requests.filter((r) => !r.viaCache && r.path.includes(path)).length;

/** Sends a raw path (no client-side normalisation of `.` and `..`, unlike fetch/URL). */
function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<number> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('mirrors created on demand', () => {
  let root: string;
  let upstream: GitUpstream;
  let authUpstream: GitUpstream;
  let oddUpstream: Server;
  let oddHost: string;
  let sidecar: RunningSidecar;
  let realBare: string;
  let privateBare: string;
  const data = () => join(root, 'data');
  const clock = new TestClock();

  before(async () => {
    root = await tempDir();
    ({ bare: realBare } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'real', 8));
    ({ bare: privateBare } = await createUpstreamRepo(join(root, 'private', 'corp'), 'secret', 4));
    upstream = await startGitUpstream(join(root, 'upstream'));
    authUpstream = await startGitUpstream(join(root, 'private'), { basicAuth: BOT });
    // An upstream that answers like no git server: a login page, an error, a redirect away.
    oddUpstream = createServer((req, res) => {
      const path = req.url ?? '/';
      if (path.startsWith('/html/'))
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html>sign in</html>');
      else if (path.startsWith('/broken/')) res.writeHead(500).end('oops');
      else if (path.startsWith('/moved/'))
        res.writeHead(302, { location: `http://${oddHost}/elsewhere/x.git/info/refs` }).end();
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => oddUpstream.listen(0, '127.0.0.1', r));
    oddHost = `127.0.0.1:${(oddUpstream.address() as AddressInfo).port}`;
    const hosts = [upstream.host, authUpstream.host, oddHost].join(',');
    sidecar = await startTestSidecar(
      { GITMIRROR_DATA_DIR: data(), GITMIRROR_HTTP_HOSTS: hosts, GITMIRROR_ALLOWED_HOSTS: hosts },
      { clock },
    );
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await authUpstream.close();
    oddUpstream.closeAllConnections();
    oddUpstream.close();
    await removeDir(root);
  });

  it("relays upstream's 404 for a repository it does not have, creating nothing (no entry, clone or dir)", async () => {
    const id = `${upstream.host}/org/missing`;
    const listed = await mirrorList(sidecar);
    const tree = await listTree(data());
    const res = await fetch(infoRefs(sidecar, id));
    assert.equal(res.status, 404, "upstream's answer reaches the client");
    const post = await fetch(`${sidecar.gitUrl}/git/${id}.git/git-upload-pack`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-git-upload-pack-request' },
      body: '0000',
    });
    assert.equal(post.status, 404, 'an upload-pack POST is relayed too');
    await assert.rejects(
      git(['clone', '--quiet', '--bare', `${sidecar.gitUrl}/git/${id}.git`, join(root, 'x')]),
    );
    const snapshot = await fetch(`${sidecar.gitUrl}/git/${id}/snapshot.tar.zst`);
    assert.equal(snapshot.status, 404);
    const body = (await snapshot.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'SNAPSHOT_NOT_FOUND');
    assert.match(body.error.message, /holds no mirror of/);

    await new Promise((r) => setTimeout(r, 200)); // a warm-up, had one started, would be under way
    assert.deepEqual((await mirrorList(sidecar)).mirrors, listed.mirrors, 'GET /v1/mirrors is unchanged');
    assert.equal(sidecar.mirrors.get(id), undefined);
    assert.equal(ownRequests(upstream, '/org/missing'), 0, 'no clone was attempted');
    assert.deepEqual(await listTree(data()), tree, 'nothing was written under the data dir');
    const { onDemand } = await mirrorList(sidecar);
    assert.ok((onDemand?.refused.upstream ?? 0) >= 2, 'counted as refused by upstream');
  });

  it("relays upstream's 401 to a client without (or with wrong) credentials, creating nothing", async () => {
    const id = `${authUpstream.host}/corp/secret`;
    const tree = await listTree(data());
    const anonymous = await fetch(infoRefs(sidecar, id));
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /Basic/);
    const wrong = await fetch(infoRefs(sidecar, id), { headers: { authorization: basic('bot', 'wrong') } });
    assert.equal(wrong.status, 401);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(sidecar.mirrors.get(id), undefined);
    assert.deepEqual((await mirrorList(sidecar)).mirrors, []);
    assert.equal(ownRequests(authUpstream, '/corp/secret'), 0);
    assert.deepEqual(await listTree(data()), tree);
  });

  it('creates nothing for answers that are not a git advertisement: a 200 web page, a 500, a redirect', async () => {
    for (const path of ['html/page', 'broken/repo', 'moved/repo']) {
      const res = await fetch(infoRefs(sidecar, `${oddHost}/${path}`), { redirect: 'manual' });
      assert.equal(res.status, { html: 200, broken: 500, moved: 302 }[path.split('/')[0]!]);
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual((await mirrorList(sidecar)).mirrors, []);
  });

  it('forgets a mirror whose on-demand clone fails, and backs off instead of cloning per request', async () => {
    // The client may read the repository (its credentials), the cache may not (it has none).
    const id = `${authUpstream.host}/corp/secret`;
    const url = `${sidecar.gitUrl}/git/${id}.git`;
    await git(['clone', '--quiet', '--bare', url, join(root, 'secret-1')], withCredentials);
    assert.equal(await refsOf(join(root, 'secret-1')), await refsOf(privateBare));
    await waitFor('the failed mirror to be forgotten', () => ownRequests(authUpstream, '/corp/secret') > 0);
    await waitFor('the failed mirror to be forgotten', () => sidecar.mirrors.get(id) === undefined);
    const attempts = ownRequests(authUpstream, '/corp/secret');
    await git(['clone', '--quiet', '--bare', url, join(root, 'secret-2')], withCredentials);
    assert.equal(await refsOf(join(root, 'secret-2')), await refsOf(privateBare), 'served through upstream');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(ownRequests(authUpstream, '/corp/secret'), attempts, 'no second clone within the backoff');
    const { mirrors, onDemand } = await mirrorList(sidecar);
    assert.deepEqual(mirrors, []);
    assert.equal(onDemand?.count, 0);
    assert.ok((onDemand?.refused.backoff ?? 0) >= 1);

    clock.advance(5_000);
    await git(['clone', '--quiet', '--bare', url, join(root, 'secret-3')], withCredentials);
    await waitFor(
      'a new attempt once the backoff is over',
      () => ownRequests(authUpstream, '/corp/secret') > attempts,
    );
    await waitFor('the mirror to be forgotten again', () => sidecar.mirrors.get(id) === undefined);
  });

  it('creates zero entries, clones and directories for random repository paths, whatever is asked of them (property)', async () => {
    const tree = await listTree(data());
    const segment = fc.stringMatching(/^[A-Za-z0-9._~-]{1,24}$/);
    const request = fc.record({
      path: fc.array(segment, { minLength: 1, maxLength: 6 }),
      action: fc.constantFrom('info-refs', 'info-refs-v2', 'upload-pack', 'snapshot'),
    });
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(request, async ({ path, action }) => {
        const base = `/git/${upstream.host}/fuzz/${path.join('/')}`;
        const status =
          action === 'upload-pack'
            ? await rawRequest(
                sidecar.gitUrl,
                'POST',
                `${base}.git/git-upload-pack`,
                { 'content-type': 'application/x-git-upload-pack-request' },
                '0000',
              )
            : action === 'snapshot'
              ? await rawRequest(sidecar.gitUrl, 'GET', `${base}/snapshot.tar.zst`)
              : await rawRequest(
                  sidecar.gitUrl,
                  'GET',
                  `${base}.git/info/refs?service=git-upload-pack`,
                  action === 'info-refs-v2' ? { 'git-protocol': 'version=2' } : {},
                );
        sent++;
        // 400 for names the sidecar refuses, upstream's 404 for the rest (snapshots: ours).
        assert.ok([400, 404].includes(status), `${action} ${path.join('/')}: ${status}`);
        assert.equal(sidecar.mirrors.list().length, 0);
      }),
      { numRuns: 120 },
    );
    assert.equal(sent, 120);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual((await mirrorList(sidecar)).mirrors, []);
    assert.equal(ownRequests(upstream, '/fuzz/'), 0, 'no clone was attempted');
    assert.deepEqual(await listTree(data()), tree);
  });

  it('mirrors a real repository on demand and serves it locally once warm', async () => {
    const id = `${upstream.host}/org/real`;
    const url = `${sidecar.gitUrl}/git/${id}.git`;
    await git(['clone', '--quiet', '--bare', url, join(root, 'real-1')]);
    assert.equal(await refsOf(join(root, 'real-1')), await refsOf(realBare));
    const mirror = sidecar.mirrors.get(id);
    assert.ok(mirror, 'the first clone created the mirror');
    await waitFor('mirror ready', () => mirror.ready);
    const before = upstream.requests.length;
    await git(['clone', '--quiet', '--bare', url, join(root, 'real-2')]);
    assert.equal(await refsOf(join(root, 'real-2')), await refsOf(realBare));
    const packs = upstream.requests.slice(before).filter((r) => r.command === 'fetch').length;
    assert.equal(packs, 0, 'served from the local mirror');
    const { mirrors, onDemand } = await mirrorList(sidecar);
    assert.deepEqual(
      mirrors.map((m) => [m.id, m.origin, m.ready]),
      [[id, 'on-demand', true]],
    );
    assert.equal(onDemand?.count, 1);
    assert.equal(onDemand?.limit, 100, 'the default bound');
  });
});

describe('GITMIRROR_MAX_ON_DEMAND_MIRRORS', () => {
  let root: string;
  let upstream: GitUpstream;
  const bares: Record<string, string> = {};
  const started: RunningSidecar[] = [];
  const start = async (env: Record<string, string>, logger?: Logger) => {
    const sidecar = await startTestSidecar(
      {
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_ALLOWED_HOSTS: upstream.host,
        ...env,
      },
      logger ? { logger } : {},
    );
    started.push(sidecar);
    return sidecar;
  };
  const repoUrl = (sidecar: RunningSidecar, name: string) =>
    `${sidecar.gitUrl}/git/${upstream.host}/org/${name}.git`;
  const packsFor = (name: string) =>
    upstream.requests.filter((r) => r.command === 'fetch' && r.path === `/org/${name}.git/git-upload-pack`);

  before(async () => {
    root = await tempDir();
    for (const name of ['one', 'two', 'three', 'pinned'])
      ({ bare: bares[name]! } = await createUpstreamRepo(join(root, 'upstream', 'org'), name, 5));
    upstream = await startGitUpstream(join(root, 'upstream'));
  });

  after(async () => {
    for (const sidecar of started) await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  it('=1: a second repository is served correctly through upstream, uncached, and logged once', async () => {
    const { logger, lines } = capturingLogger('warn');
    const sidecar = await start(
      { GITMIRROR_DATA_DIR: join(root, 'limit-1'), GITMIRROR_MAX_ON_DEMAND_MIRRORS: '1' },
      logger,
    );
    await git(['clone', '--quiet', '--bare', repoUrl(sidecar, 'one'), join(root, 'l1-one')]);
    await waitFor(
      'first mirror ready',
      () => sidecar.mirrors.get(`${upstream.host}/org/one`)?.ready === true,
    );

    for (const i of [1, 2]) {
      const target = join(root, `l1-two-${i}`);
      const before = packsFor('two').length;
      await git([
        '-c',
        `protocol.version=${i === 1 ? 2 : 0}`,
        'clone',
        '--quiet',
        '--bare',
        repoUrl(sidecar, 'two'),
        target,
      ]);
      assert.equal(await refsOf(target, 'refs/heads/'), await refsOf(bares.two!, 'refs/heads/'));
      assert.equal(await refsOf(target, 'refs/tags/'), await refsOf(bares.two!, 'refs/tags/'));
      await git(['fsck'], { cwd: target });
      const packs = packsFor('two').slice(before);
      assert.deepEqual(
        packs.map((r) => r.viaCache),
        [true],
        'the pack came from upstream, relayed for this client only',
      );
    }
    assert.equal(sidecar.mirrors.get(`${upstream.host}/org/two`), undefined, 'no mirror was created');
    assert.equal(ownRequests(upstream, '/org/two'), 0, 'and no clone started');
    assert.deepEqual(await readdir(join(root, 'limit-1', 'mirrors', upstream.host, 'org')), ['one.git']);

    const { mirrors, onDemand } = await mirrorList(sidecar);
    assert.deepEqual(
      mirrors.map((m) => m.id),
      [`${upstream.host}/org/one`],
    );
    assert.deepEqual({ limit: onDemand?.limit, count: onDemand?.count }, { limit: 1, count: 1 });
    assert.equal(onDemand?.refused.limit, 2, 'one refusal per clone (its info/refs)');
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(metrics, /gitmirror_on_demand_refused_total\{reason="limit"\} 2\b/);
    assert.match(metrics, /gitmirror_on_demand_mirrors 1\b/);
    const logged = lines.filter((l) => String(l.msg).startsWith('on-demand mirror limit reached'));
    assert.deepEqual(
      logged.map((l) => l.mirror),
      [`${upstream.host}/org/two`],
      'logged once for the repository, not per request',
    );

    // Configured mirrors are never refused and do not count.
    const put = await fetch(`${sidecar.adminUrl}/v1/mirrors/${upstream.host}/org/three`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: upstream.url('org/three.git') }),
    });
    assert.equal(put.status, 201);
    assert.equal((await mirrorList(sidecar)).onDemand?.count, 1);
  });

  it('=0: configured mirrors serve locally; requests for anything else create nothing', async () => {
    const sidecar = await start({
      GITMIRROR_DATA_DIR: join(root, 'limit-0'),
      GITMIRROR_MAX_ON_DEMAND_MIRRORS: '0',
      GITMIRROR_MIRRORS: upstream.url('org/pinned.git'),
    });
    await waitFor('configured mirror ready', () => sidecar.isReady());
    const before = packsFor('pinned').length;
    await git(['clone', '--quiet', '--bare', repoUrl(sidecar, 'pinned'), join(root, 'l0-pinned')]);
    assert.equal(await refsOf(join(root, 'l0-pinned')), await refsOf(bares.pinned!));
    assert.deepEqual(
      packsFor('pinned')
        .slice(before)
        .filter((r) => r.viaCache),
      [],
      'the configured mirror served the pack',
    );

    const attempts = ownRequests(upstream, '/org/one');
    await git(['clone', '--quiet', '--bare', repoUrl(sidecar, 'one'), join(root, 'l0-one')]);
    assert.equal(await refsOf(join(root, 'l0-one')), await refsOf(bares.one!));
    await new Promise((r) => setTimeout(r, 200));
    const { mirrors, onDemand } = await mirrorList(sidecar);
    assert.deepEqual(
      mirrors.map((m) => [m.id, m.origin]),
      [[`${upstream.host}/org/pinned`, 'configured']],
    );
    assert.deepEqual({ limit: onDemand?.limit, count: onDemand?.count }, { limit: 0, count: 0 });
    assert.equal(onDemand?.refused.disabled, 1);
    assert.equal(ownRequests(upstream, '/org/one'), attempts, 'no clone was started');
  });

  it('counts mirrors found on disk, keeps and serves them beyond the bound, and frees a place once one is configured', async () => {
    const dataDir = join(root, 'disk');
    const first = await start({ GITMIRROR_DATA_DIR: dataDir });
    for (const name of ['one', 'two']) {
      await git(['clone', '--quiet', '--bare', repoUrl(first, name), join(root, `disk-${name}`)]);
      await waitFor(`${name} ready`, () => first.mirrors.get(`${upstream.host}/org/${name}`)?.ready === true);
    }
    await first.shutdown();

    const second = await start({ GITMIRROR_DATA_DIR: dataDir, GITMIRROR_MAX_ON_DEMAND_MIRRORS: '1' });
    const found = await mirrorList(second);
    assert.deepEqual(
      found.mirrors.map((m) => [m.id, m.origin, m.ready]),
      [
        [`${upstream.host}/org/one`, 'disk', true],
        [`${upstream.host}/org/two`, 'disk', true],
      ],
      'both are kept and served, though over the bound',
    );
    assert.equal(found.onDemand?.count, 2);
    await git(['clone', '--quiet', '--bare', repoUrl(second, 'three'), join(root, 'disk-three-1')]);
    assert.equal(second.mirrors.get(`${upstream.host}/org/three`), undefined, 'over the bound: not created');

    for (const name of ['one', 'two']) {
      const put = await fetch(`${second.adminUrl}/v1/mirrors/${upstream.host}/org/${name}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: upstream.url(`org/${name}.git`) }),
      });
      assert.equal(put.status, 200, 'the found mirror is adopted, not re-created');
    }
    assert.equal((await mirrorList(second)).onDemand?.count, 0, 'configured mirrors do not count');
    await git(['clone', '--quiet', '--bare', repoUrl(second, 'three'), join(root, 'disk-three-2')]);
    assert.equal(second.mirrors.get(`${upstream.host}/org/three`)?.origin, 'on-demand');
  });
});
