import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorSpec, MirrorStatus } from '../../../core/admin-api.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { metricValue, scrape } from '../../../testing/metrics.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

const TOKEN = 'fleet-token-0123456789';
const REF_CHECK_INTERVAL_MS = 3_000;

describe('a fleet of replicas shares one upstream: the writer fetches, its followers fetch from it', () => {
  let root: string;
  let upstream: GitUpstream;
  let work: string;
  let id: string;
  let writer: RunningSidecar;
  let followers: RunningSidecar[];
  const running: RunningSidecar[] = [];

  const admin = (sidecar: RunningSidecar, path: string, init: RequestInit = {}) =>
    fetch(`${sidecar.adminUrl}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...init.headers },
    });
  const put = async (sidecar: RunningSidecar, spec: Omit<MirrorSpec, 'url'>) => {
    const res = await admin(sidecar, `/v1/mirrors/${id}`, {
      method: 'PUT',
      body: JSON.stringify({ url: upstream.url('org/repo.git'), ...spec }),
    });
    assert.ok(res.ok, `PUT: ${res.status} ${await res.text()}`);
  };
  const status = async (sidecar: RunningSidecar) =>
    (await (await admin(sidecar, `/v1/mirrors/${id}`)).json()) as MirrorStatus;
  const since = (from: number) => upstream.requests.slice(from);
  /** `ls-remote` sends an ls-refs without ref prefixes; `fetch` sends its refspecs' prefixes. */
  const refChecks = (from: number) => since(from).filter((r) => r.command === 'ls-refs' && !r.refPrefixes);
  const headOf = (sidecar: RunningSidecar) => sidecar.mirrors.get(id)?.head;

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 3));
    upstream = await startGitUpstream(join(root, 'upstream'));
    id = `${upstream.host}/org/repo`;
    const tokenFile = join(root, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
    const start = (name: string) =>
      startTestSidecar({
        GITMIRROR_DATA_DIR: join(root, name),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_ADMIN_TOKEN_FILE: tokenFile,
        GITMIRROR_FETCH_INTERVAL: '1h',
        GITMIRROR_REF_CHECK_INTERVAL: `${REF_CHECK_INTERVAL_MS}ms`,
      });
    const all = await Promise.all(['writer', 'f1', 'f2'].map(start));
    writer = all[0]!;
    followers = all.slice(1);
    running.push(...all);
    await put(writer, {
      snapshot: { writer: true },
      fleet: { followers: followers.map((f) => f.adminUrl) },
    });
    for (const f of followers) await put(f, { fleet: { writer: writer.adminUrl } });
    for (const sidecar of running) await admin(sidecar, `/v1/mirrors/${id}/restore`, { method: 'POST' });
    await waitFor('every replica ready', () => running.every((s) => s.mirrors.get(id)?.ready));
  });

  after(async () => {
    for (const sidecar of running) await sidecar.shutdown();
    await upstream?.close();
    await removeDir(root);
  });

  it("serves the fleet only to the fleet's token, and only upload-pack", async () => {
    const refs = `/v1/peer/${id}.git/info/refs?service=git-upload-pack`;
    assert.equal((await fetch(`${writer.adminUrl}${refs}`)).status, 401);
    const ok = await admin(writer, refs);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), 'application/x-git-upload-pack-advertisement');
    await ok.arrayBuffer();
    const push = await admin(writer, `/v1/peer/${id}.git/info/refs?service=git-receive-pack`);
    assert.equal(push.status, 404);
    // A follower does not stand in for upstream: only the writer does.
    assert.equal((await admin(followers[0]!, refs)).status, 503);
  });

  it('a fetch on the writer that moves refs is passed on: the followers fetch from it, and upstream hears from the writer alone', async () => {
    const pushed = await addCommit(work, 'a.txt', 'one\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const from = upstream.requests.length;
    const res = await admin(writer, `/v1/mirrors/${id}/fetch?wait=true`, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.equal(headOf(writer), pushed);
    const writerRequests = upstream.requests.length;
    assert.ok(writerRequests > from, "the writer's fetch reached upstream");

    await waitFor('every follower at the pushed commit', () => followers.every((f) => headOf(f) === pushed));
    assert.deepEqual(since(writerRequests), [], 'no follower asked upstream');
    for (const f of followers) {
      const fleet = (await status(f)).fleet;
      assert.equal(fleet?.role, 'follower');
      assert.equal(fleet?.lastFetchSource, 'writer');
    }
    const metrics = await scrape(writer.adminUrl);
    assert.equal(metricValue(metrics, 'gitmirror_fleet_notifications_total', { outcome: 'sent' }), 2);
    assert.deepEqual((await status(writer)).fleet, {
      role: 'writer',
      followers: 2,
      lastFetchSource: 'upstream',
    });

    // A fetch that moves nothing is not passed on.
    await admin(writer, `/v1/mirrors/${id}/fetch?wait=true`, { method: 'POST' });
    await new Promise((r) => setTimeout(r, 300));
    const after = await scrape(writer.adminUrl);
    assert.equal(metricValue(after, 'gitmirror_fleet_notifications_total', { outcome: 'sent' }), 2);
  });

  it("clients on every follower see a commit pushed a moment ago, for one ref check upstream: the writer's", async () => {
    const pushed = await addCommit(work, 'b.txt', 'two\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    // Every replica's last look at upstream is now older than the ref-check interval.
    await new Promise((r) => setTimeout(r, REF_CHECK_INTERVAL_MS + 100));
    const from = upstream.requests.length;
    const url = (f: RunningSidecar) => `${f.gitUrl}/git/${id}.git`;
    const seen = await Promise.all(
      [...followers, ...followers, ...followers].map(
        async (f) => (await git(['ls-remote', url(f), 'refs/heads/main'])).split('\t')[0],
      ),
    );
    assert.deepEqual(new Set(seen), new Set([pushed]));
    assert.equal(refChecks(from).length, 1, 'one ls-remote reached upstream for the whole fleet');
    assert.equal(since(from).filter((r) => r.command === 'fetch').length, 1, 'one fetch: the writer');
    const metrics = await scrape(followers[0]!.adminUrl);
    assert.ok(
      (metricValue(metrics, 'gitmirror_fleet_writer_requests_total', { kind: 'ref_check', outcome: 'ok' }) ??
        0) >= 1,
    );
  });

  it('a follower whose writer cannot serve (demoted, then gone) fetches from upstream itself, and says why', async () => {
    await put(writer, {});
    const first = await addCommit(work, 'c.txt', 'three\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const from = upstream.requests.length;
    assert.equal(
      (await admin(followers[0]!, `/v1/mirrors/${id}/fetch?wait=true`, { method: 'POST' })).status,
      200,
    );
    assert.equal(headOf(followers[0]!), first);
    assert.ok(
      since(from).some((r) => r.command === 'fetch'),
      'the follower fetched from upstream',
    );
    const fleet = (await status(followers[0]!)).fleet;
    assert.equal(fleet?.lastFetchSource, 'upstream');
    assert.match(fleet?.writerError ?? '', /503|not serving the fleet/);

    await writer.shutdown();
    running.splice(running.indexOf(writer), 1);
    const second = await addCommit(work, 'd.txt', 'four\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    assert.equal(
      (await admin(followers[1]!, `/v1/mirrors/${id}/fetch?wait=true`, { method: 'POST' })).status,
      200,
    );
    assert.equal(headOf(followers[1]!), second);
    const metrics = await scrape(followers[1]!.adminUrl);
    assert.equal(
      metricValue(metrics, 'gitmirror_fleet_writer_requests_total', { kind: 'fetch', outcome: 'failed' }),
      1,
    );
  });
});
