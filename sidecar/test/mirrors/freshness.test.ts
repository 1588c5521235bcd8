import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { silentLogger } from '../../../core/log.ts';
import { parseRepoId } from '../../../core/repo-id.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../../testing/git-repos.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { waitFor } from '../../../testing/wait.ts';
import { type GitInvocation, ProcessGitRunner } from '../../src/git/git-runner.ts';
import { Freshness } from '../../src/mirrors/freshness.ts';
import { fetchMirror } from '../../src/mirrors/git-mirror-ops.ts';
import { Mirror } from '../../src/mirrors/mirror.ts';

/**
 * The freshness rules against real repositories: an upstream bare repository and a mirror
 * cloned from it by path. The fetch is the manager's in production; here it is counted, and
 * either really fetches or never finishes.
 */
describe('freshness on client demand', () => {
  let root: string;
  let upstream: string;
  let work: string;
  let dir: string;
  let n = 0;
  const runner = new ProcessGitRunner();
  const lsRemotes: GitInvocation[] = [];
  const counting = {
    run: (invocation: GitInvocation) => {
      if (invocation.args.includes('ls-remote')) lsRemotes.push(invocation);
      return runner.run(invocation);
    },
    spawn: (invocation: GitInvocation) => runner.spawn(invocation),
    version: () => runner.version(),
  };

  before(async () => {
    root = await tempDir();
    ({ bare: upstream, work } = await createUpstreamRepo(join(root, 'upstream'), 'repo', 3));
  });

  after(() => removeDir(root));

  beforeEach(async () => {
    dir = join(root, `mirror-${++n}.git`);
    await git(['clone', '--quiet', '--mirror', upstream, dir]);
    lsRemotes.length = 0;
  });

  // A client waits for its check's fetch this long; long enough for a loaded machine's git, except
  // where a test is about the wait running out.
  function setUp(fetch: (mirror: Mirror) => Promise<void>, upstreamUrl = upstream, waitMs = 20_000) {
    const clock = new TestClock(Date.parse('2026-01-01T00:00:00Z'));
    const settings = {
      fetchIntervalMs: 300_000,
      snapshot: { writer: false, retain: 3 },
      access: 'Public' as const,
      lfs: { prefetch: 'None' as const },
      fleet: {},
    };
    const mirror = new Mirror({ repo: parseRepoId('h/o/repo'), upstream: upstreamUrl, dir, settings, clock });
    mirror.readyFrom({ source: 'disk', head: undefined });
    const fetches: Mirror[] = [];
    const freshness = new Freshness({
      git: counting,
      logger: silentLogger(),
      refCheckIntervalMs: 5_000,
      waitMs,
      fetch: (m) => {
        fetches.push(m);
        return fetch(m);
      },
    });
    return { mirror, clock, freshness, fetches };
  }

  const realFetch = (mirror: Mirror) =>
    fetchMirror(mirror.gitContext(runner), { timeoutMs: 30_000, lowSpeedAbort: false });
  const neverFetches = () => new Promise<void>(() => {});

  it('asks upstream, and fetches nothing while the refs are the same', async () => {
    const { mirror, freshness, fetches } = setUp(realFetch);
    await freshness.beforeRefs(mirror);
    assert.equal(lsRemotes.length, 1);
    assert.equal(fetches.length, 0);
  });

  it('fetches and waits for it when upstream moved, so the client sees the new commit', async () => {
    const { mirror, freshness, fetches } = setUp(realFetch);
    const commit = await addCommit(work, 'new.txt', 'new\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    await Promise.all([freshness.beforeRefs(mirror), freshness.beforeRefs(mirror)]);
    assert.equal(lsRemotes.length, 1, 'concurrent requests share one check');
    assert.equal(fetches.length, 1);
    assert.equal((await git(['rev-parse', 'main'], { cwd: dir })).trim(), commit);
  });

  it('asks at most once per interval, as measured by the clock', async () => {
    const { mirror, clock, freshness, fetches } = setUp(realFetch);
    await freshness.beforeRefs(mirror);
    await addCommit(work, 'later.txt', 'later\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    clock.advance(4_999);
    await freshness.beforeRefs(mirror);
    assert.equal(lsRemotes.length, 1, 'within the interval: no check');
    clock.advance(1);
    await freshness.beforeRefs(mirror);
    assert.equal(lsRemotes.length, 2);
    assert.equal(fetches.length, 1);
  });

  it('waits for a slow fetch only GITMIRROR_FRESHNESS_WAIT, then serves what it has', async () => {
    const { mirror, freshness, fetches } = setUp(neverFetches, upstream, 300);
    await addCommit(work, 'slow.txt', 'slow\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    const started = performance.now();
    await freshness.beforeRefs(mirror);
    assert.ok(performance.now() - started < 10_000, 'returned without the fetch');
    // The check goes on without the client: it finds upstream moved and asks for the fetch.
    await waitFor('the fetch asked for', () => fetches.length === 1);
  });

  it('serves what it has when upstream is unreachable, and does not ask again at once', async () => {
    const { mirror, freshness, fetches } = setUp(realFetch, join(root, 'gone.git'));
    await freshness.beforeRefs(mirror);
    await freshness.beforeRefs(mirror);
    assert.equal(lsRemotes.length, 1);
    assert.equal(fetches.length, 0);
  });

  it('leaves a mirror that is not ready alone', async () => {
    const { freshness } = setUp(realFetch);
    const settings = {
      fetchIntervalMs: 1,
      snapshot: { writer: false, retain: 3 },
      access: 'Public' as const,
      lfs: { prefetch: 'None' as const },
      fleet: {},
    };
    const cold = new Mirror({ repo: parseRepoId('h/o/cold'), upstream, dir, settings });
    await freshness.beforeRefs(cold);
    assert.equal(lsRemotes.length, 0);
  });

  it('missingWants: nothing missing, nothing fetched', async () => {
    const { mirror, freshness, fetches } = setUp(realFetch);
    const head = (await git(['rev-parse', 'main'], { cwd: dir })).trim();
    assert.deepEqual(await freshness.missingWants(mirror, [head]), []);
    assert.equal(fetches.length, 0);
  });

  it('missingWants: a commit pushed since the last fetch is fetched, then found', async () => {
    const { mirror, freshness, fetches } = setUp(realFetch);
    const commit = await addCommit(work, 'wanted.txt', 'wanted\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    assert.deepEqual(await freshness.missingWants(mirror, [commit]), []);
    assert.equal(fetches.length, 1);
  });

  it('missingWants: what even the fetch did not bring is still missing (upstream answers for it)', async () => {
    const { mirror, freshness, fetches } = setUp(neverFetches, upstream, 300);
    const unknown = 'c'.repeat(40);
    assert.deepEqual(await freshness.missingWants(mirror, [unknown]), [unknown]);
    assert.equal(fetches.length, 1);
  });
});
