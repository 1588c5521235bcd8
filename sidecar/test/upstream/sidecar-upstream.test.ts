import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorList } from '../../../core/admin-api.ts';
import { capturingLogger } from '../../../testing/capturing-logger.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

describe('upstream protection in a running sidecar', () => {
  let root: string;
  let upstream: GitUpstream;
  let work: string;
  const sidecars: RunningSidecar[] = [];

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 3));
    upstream = await startGitUpstream(join(root, 'upstream'));
  });

  after(async () => {
    for (const sidecar of sidecars) await sidecar.shutdown();
    await upstream?.close();
    await removeDir(root);
  });

  it('after a 429 with Retry-After: 5 asks nothing of the host for 5 s, serves clones from the mirror, and recovers by itself', async () => {
    const { logger, lines } = capturingLogger();
    const sidecar = await startTestSidecar(
      {
        GITMIRROR_DATA_DIR: join(root, 'throttled'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
        GITMIRROR_REF_CHECK_INTERVAL: '200ms',
      },
      { logger },
    );
    sidecars.push(sidecar);
    await waitFor('ready', () => sidecar.isReady(), { timeoutMs: 60_000 });
    const url = `${sidecar.gitUrl}/git/${upstream.host}/org/repo.git`;
    const before = (await git(['ls-remote', url, 'refs/heads/main'])).split('\t')[0];

    upstream.failWith(429, { 'Retry-After': '5' });
    const pushed = await addCommit(work, 'new.txt', 'pushed while throttled\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const from = upstream.requests.length;
    await new Promise((r) => setTimeout(r, 250));
    // This client's ref request makes the sidecar ask upstream, which answers 429.
    assert.equal((await git(['ls-remote', url, 'refs/heads/main'])).split('\t')[0], before);
    const throttled = upstream.requests.slice(from);
    assert.equal(throttled.length, 1, 'one request met the 429');
    const throttledAt = throttled[0]!.at;
    upstream.failWith(undefined);
    const list = (await (await fetch(`${sidecar.adminUrl}/v1/mirrors`)).json()) as MirrorList;
    const host = list.upstreams?.find((h) => h.host === upstream.host);
    assert.equal(host?.backoffReason, '429, Retry-After 5 s');
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(`gitmirror_upstream_throttled_total\\{host="${upstream.host}",status="429"\\} 1`),
    );
    assert.match(
      metrics,
      new RegExp(`gitmirror_upstream_backoff_seconds\\{host="${upstream.host}"\\} [1-5](\\.\\d+)?\\n`),
    );

    // For the next 5 s clients clone and fetch from the mirror, and upstream hears nothing.
    let clones = 0;
    while (Date.now() - throttledAt < 4000) {
      const clone = join(root, `clone-${clones++}`);
      await git(['clone', '--quiet', '--bare', url, clone]);
      assert.equal((await git(['rev-parse', 'refs/heads/main'], { cwd: clone })).trim(), before);
      await removeDir(clone);
    }
    assert.ok(clones >= 3, `${clones} clones served during the wait`);
    await new Promise((r) => setTimeout(r, Math.max(0, throttledAt + 4900 - Date.now())));
    assert.deepEqual(upstream.requests.slice(from + 1), [], 'no request reached upstream during the 5 s');
    // After the wait the next client's ref request asks upstream again and gets the new commit.
    await new Promise((r) => setTimeout(r, Math.max(0, throttledAt + 5100 - Date.now())));
    await waitFor(
      'the pushed commit served',
      async () => (await git(['ls-remote', url, 'refs/heads/main'])).startsWith(pushed),
      { timeoutMs: 20_000 },
    );
    assert.ok(upstream.requests[from + 1]!.at - throttledAt >= 5000);
    const waits = lines.filter((l) => String(l.msg).startsWith('upstream asked us to wait'));
    assert.equal(waits.length, 1, 'the wait is logged once');
    assert.equal(waits[0]!.status, 429);
    assert.ok(lines.some((l) => String(l.msg).startsWith('upstream backoff over')));
  });

  it('50 mirrors on one host at R ref checks per second: upstream sees at most R ls-remote in any second while clients hammer all 50', async () => {
    const R = 5;
    const names = Array.from({ length: 50 }, (_, i) => `m${i}`);
    await Promise.all(
      names.map((n) =>
        cp(join(root, 'upstream', 'org', 'repo.git'), join(root, 'upstream', 'fifty', `${n}.git`), {
          recursive: true,
        }),
      ),
    );
    // The mirrors are on disk already (one clone, copied), as after a restart: served at once.
    const dataDir = join(root, 'fifty');
    const first = join(dataDir, 'mirrors', upstream.host, 'fifty', `${names[0]}.git`);
    await git(['clone', '--quiet', '--mirror', upstream.url(`fifty/${names[0]}.git`), first]);
    await Promise.all(
      names.slice(1).map(async (n) => {
        const dir = join(dataDir, 'mirrors', upstream.host, 'fifty', `${n}.git`);
        await cp(first, dir, { recursive: true });
        await git(['config', 'remote.origin.url', upstream.url(`fifty/${n}.git`)], { cwd: dir });
      }),
    );
    const sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: dataDir,
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_MIRRORS: names.map((n) => upstream.url(`fifty/${n}.git`)).join(','),
      GITMIRROR_REF_CHECK_INTERVAL: '1s',
      GITMIRROR_FRESHNESS_WAIT: '2s',
      GITMIRROR_UPSTREAM_REF_CHECKS_PER_SECOND: String(R),
    });
    sidecars.push(sidecar);
    await waitFor('50 mirrors ready', () => sidecar.isReady(), { timeoutMs: 120_000 });
    // Mirrors found on disk are fetched once at start; let those finish, so every request
    // upstream sees from now on is a ref check.
    await waitFor('the start-up fetches done', () =>
      sidecar.mirrors.list().every((m) => m.status().lastFetchTime !== undefined),
    );
    const from = upstream.requests.length;
    const started = Date.now();
    const slowest: number[] = [];
    // Eight clients, each asking the 50 mirrors for their refs in turn, for 6 s.
    await Promise.all(
      Array.from({ length: 8 }, async (_, client) => {
        for (let i = client; Date.now() - started < 6000; i += 8) {
          const t = Date.now();
          await git(['ls-remote', `${sidecar.gitUrl}/git/${upstream.host}/fifty/${names[i % 50]}.git`]);
          slowest.push(Date.now() - t);
        }
      }),
    );
    const lsRemotes = upstream.requests
      .slice(from)
      .filter((r) => r.method === 'GET' && r.service === 'git-upload-pack')
      .map((r) => r.at);
    let busiest = 0;
    for (const at of lsRemotes)
      busiest = Math.max(busiest, lsRemotes.filter((t) => t >= at && t < at + 1000).length);
    assert.ok(busiest <= R, `at most ${R} ls-remote in any second at upstream; saw ${busiest}`);
    // The limit is kept by spacing the checks, not by dropping them (2 R, not 6 R: a loaded
    // machine starts git slowly, and the next check waits for the last one's request to leave).
    assert.ok(lsRemotes.length >= 2 * R, `the ref checks still ran: ${lsRemotes.length} in 6 s`);
    assert.ok(
      upstream.requests.slice(from).every((r) => r.command !== 'fetch' && r.refPrefixes === undefined),
      'nothing but ref checks reached upstream (no fetch: upstream did not move)',
    );
    // No client waited for a ref check longer than GITMIRROR_FRESHNESS_WAIT (and some slack).
    assert.ok(Math.max(...slowest) < 4000, `slowest client request ${Math.max(...slowest)} ms`);
  });
});
