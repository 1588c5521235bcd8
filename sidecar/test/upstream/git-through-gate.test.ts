import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { HostGate, type Turn } from '../../src/upstream/host-gate.ts';

const runner = new ProcessGitRunner();

describe("git's own upstream requests, traced and gated", () => {
  let root: string;
  let upstream: GitUpstream;

  before(async () => {
    root = await tempDir();
    await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 3);
    upstream = await startGitUpstream(join(root, 'upstream'));
  });

  after(async () => {
    await upstream?.close();
    await removeDir(root);
  });

  const lsRemote = (repo = 'org/repo.git', turn?: Turn) =>
    runner.run({
      args: ['ls-remote', '--', upstream.url(repo)],
      cwd: root,
      timeoutMs: 30_000,
      upstreamHost: upstream.host,
      onRequestSent: () => turn?.requestSent(),
    });

  it("reads upstream's 429 and Retry-After from git's HTTP trace, which git's message does not say", async () => {
    upstream.failWith(429, { 'Retry-After': '5' });
    try {
      await assert.rejects(lsRemote(), (err) => {
        assert.ok(isGitMirrorError(err, 'UPSTREAM_THROTTLED'));
        assert.equal(err.retryAfterMs, 5000);
        assert.equal(err.message, `git ls-remote: ${upstream.host} answered 429 and asks us to wait 5 s`);
        return true;
      });
      const mirror = join(root, 'mirror.git');
      upstream.failWith(undefined);
      await git(['clone', '--quiet', '--mirror', upstream.url('org/repo.git'), mirror]);
      upstream.failWith(503, { 'Retry-After': '30' });
      await assert.rejects(
        runner.run({
          args: ['fetch', '--quiet', 'origin'],
          cwd: mirror,
          timeoutMs: 30_000,
          upstreamHost: upstream.host,
        }),
        (err) => isGitMirrorError(err, 'UPSTREAM_THROTTLED') && err.retryAfterMs === 30_000,
      );
      // An outage that names no wait is an ordinary failure.
      upstream.failWith(503);
      await assert.rejects(
        lsRemote(),
        (err) => isGitMirrorError(err, 'PROCESS_FAILED') && /503/.test(err.message),
      );
    } finally {
      upstream.failWith(undefined);
    }
    const { stdout } = await lsRemote();
    assert.match(stdout, /refs\/heads\/main/);
  });

  it('leaves a throttled host alone for its Retry-After, then asks it again by itself', async () => {
    const gate = new HostGate(upstream.host, { transfers: 4, refChecksPerSecond: 50 });
    upstream.failWith(429, { 'Retry-After': '2' });
    const first = gate.run({ work: 'ref-check', key: 'org/repo' }, () => lsRemote());
    await assert.rejects(first, (err) => isGitMirrorError(err, 'UPSTREAM_THROTTLED'));
    const throttledAt = Date.now();
    const before = upstream.requests.length;
    upstream.failWith(undefined);
    while (Date.now() - throttledAt < 1800) {
      await assert.rejects(
        gate.run({ work: 'ref-check', key: 'org/repo' }, () => lsRemote()),
        (err) => isGitMirrorError(err, 'UPSTREAM_THROTTLED') && err.retryAfterMs! <= 2000,
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(upstream.requests.length, before, 'no request reached upstream while it asked us to wait');
    await new Promise((r) => setTimeout(r, 250));
    const { stdout } = await gate.run({ work: 'ref-check', key: 'org/repo' }, () => lsRemote());
    assert.match(stdout, /refs\/heads\/main/);
    assert.ok(upstream.requests[before]!.at - throttledAt >= 1950);
  });

  it('50 mirrors on one host, every one asked for all the time: upstream sees at most R ls-remote per second', async () => {
    const R = 10;
    const repos = Array.from({ length: 50 }, (_, i) => `org/m${i}.git`);
    await Promise.all(
      repos.map((repo) =>
        cp(join(root, 'upstream', 'org', 'repo.git'), join(root, 'upstream', repo), { recursive: true }),
      ),
    );
    const gate = new HostGate(upstream.host, { transfers: 4, refChecksPerSecond: R });
    const from = upstream.requests.length;
    const started = Date.now();
    // Clients hammer all 50 for 4 seconds: each mirror always has a check queued (one at a time, as
    // the freshness check is single-flight per mirror).
    const hammer = async (repo: string) => {
      let done = 0;
      while (Date.now() - started < 4000) {
        await gate.run({ work: 'ref-check', key: repo }, (turn) => lsRemote(repo, turn));
        done++;
      }
      return done;
    };
    const counts = await Promise.all(repos.map(hammer));
    const arrivals = upstream.requests
      .slice(from)
      .filter((r) => r.method === 'GET' && r.service === 'git-upload-pack')
      .map((r) => r.at);
    let busiest = 0;
    for (const at of arrivals)
      busiest = Math.max(busiest, arrivals.filter((t) => t >= at && t < at + 1000).length);
    assert.ok(busiest <= R, `at most ${R} ls-remote in any second at upstream; saw ${busiest}`);
    assert.ok(arrivals.length >= 4 * R - 2, `the gate still let ${arrivals.length} through in 4+ s`);
    // Turns go round: the mirrors checked first are not checked again before the others had a turn.
    assert.ok(counts.every((n) => n >= 1));
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `checks per mirror: ${counts.join(',')}`);
  });
});
