import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../../../core/clock.ts';
import { silentLogger } from '../../../core/log.ts';
import { parseRepoId } from '../../../core/repo-id.ts';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { commitLfsFiles, lfsEnvironment } from '../../../testing/lfs-client.ts';
import { type LfsUpstream, startLfsUpstream } from '../../../testing/lfs-upstream.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { HeldCredentials } from '../../src/git/credentials.ts';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { LfsMembership } from '../../src/lfs/membership.ts';
import { lfsPointersAt } from '../../src/lfs/pointer-scan.ts';
import { LfsPrefetcher, PrefetchQueue } from '../../src/lfs/prefetch.ts';
import { UpstreamLfs } from '../../src/lfs/upstream-lfs.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';
import { lfsObjectKey } from '../../src/store/lfs-objects.ts';
import { metricValue, randomContent, replicaCache } from './support.ts';

describe('LFS pointers in a mirror, and prefetch', () => {
  let root: string;
  let upstream: LfsUpstream;
  let mirror: string;
  let onMain: Awaited<ReturnType<typeof commitLfsFiles>>;
  let onBranch: Awaited<ReturnType<typeof commitLfsFiles>>;
  const gitRunner = new ProcessGitRunner();

  before(async () => {
    root = await tempDir('gitmirror-lfs-prefetch-');
    upstream = await startLfsUpstream(join(root, 'upstream'), {
      credentials: { user: 'cache', password: 'token' },
    });
    const env = await lfsEnvironment(join(root, 'home'));
    const { work } = await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 2);
    const main = { 'a.bin': randomContent(100_000), 'x/b.bin': randomContent(20_000) };
    onMain = await commitLfsFiles(work, main, env);
    await git(['checkout', '--quiet', '-b', 'topic'], { cwd: work, env });
    onBranch = await commitLfsFiles(work, { 'c.bin': randomContent(5_000) }, env, 'on a branch');
    await git(['checkout', '--quiet', 'main'], { cwd: work, env });
    // Upstream holds main's objects; the branch's object was never uploaded.
    for (const content of Object.values(main)) upstream.add('org/repo', content);
    mirror = join(root, 'mirror.git');
    await git(['clone', '--quiet', '--mirror', work, mirror]);
  });
  after(async () => {
    await upstream.close();
    await removeDir(root);
  });

  it('finds the objects HEAD points to, or every ref', async () => {
    const sort = (ids: { oid: string }[]) => ids.map((i) => i.oid).sort();
    assert.deepEqual(sort(await lfsPointersAt(gitRunner, mirror, 'Head')), sort(Object.values(onMain)));
    assert.deepEqual(
      sort(await lfsPointersAt(gitRunner, mirror, 'AllRefs')),
      sort([...Object.values(onMain), ...Object.values(onBranch)]),
    );
    const empty = join(root, 'empty.git');
    await git(['init', '--quiet', '--bare', empty]);
    assert.deepEqual(await lfsPointersAt(gitRunner, empty, 'Head'), []);
  });

  it('knows an object belongs to a repository by its pointer in the mirror, or by upstream having said so', async () => {
    const membership = new LfsMembership({ git: gitRunner });
    const stranger = { oid: 'e'.repeat(64), size: 3 };
    const a = onMain['a.bin']!;
    const wrongSize = { oid: a.oid, size: a.size + 1 };
    const known = await membership.known('h/org/repo', mirror, [a, onBranch['c.bin']!, stranger, wrongSize]);
    assert.deepEqual([...known].sort(), [a.oid, onBranch['c.bin']!.oid].sort());
    assert.equal((await membership.known('h/org/repo', undefined, [stranger])).size, 0);
    membership.remember('h/org/repo', [stranger.oid]);
    assert.deepEqual([...(await membership.known('h/org/repo', undefined, [stranger]))], [stranger.oid]);
    assert.equal((await membership.known('h/org/other', undefined, [stranger])).size, 0);
  });

  it("prefetch puts HEAD's objects in the store once; a second run and another replica move nothing", async () => {
    const store = new FileSnapshotStore(join(root, 'store'));
    const repository = {
      repo: parseRepoId(`${upstream.host}/org/repo`),
      upstream: upstream.url('org/repo.git'),
      mirror: {
        access: 'Public' as const,
        credentials: held('token'),
      },
      dir: mirror,
    };
    const prefetcher = async (name: string) => {
      const replica = await replicaCache(join(root, name), { store });
      const run = new LfsPrefetcher({
        git: gitRunner,
        objects: replica.cache,
        upstream: new UpstreamLfs({ httpHosts: new Set([upstream.host]) }),
        metrics: replica.metrics,
        logger: silentLogger(),
      });
      return { ...replica, run: (scope: 'Head' | 'AllRefs', r = repository) => run.run(r, scope) };
    };
    const writer = await prefetcher('writer');
    assert.deepEqual(await writer.run('Head'), { objects: 2, held: 0, fetched: 2, failed: 0 });
    for (const { oid, size } of Object.values(onMain)) {
      assert.equal((await store.head(lfsObjectKey(oid)))?.sizeBytes, size);
      assert.equal(upstream.downloads(oid), 1);
    }
    assert.equal(
      await metricValue(writer.registry, 'gitmirror_lfs_prefetch_objects_total', { outcome: 'fetched' }),
      2,
    );
    assert.deepEqual(await writer.run('Head'), { objects: 2, held: 2, fetched: 0, failed: 0 });
    const other = await prefetcher('other-replica');
    assert.deepEqual(await other.run('Head'), { objects: 2, held: 2, fetched: 0, failed: 0 });
    for (const { oid } of Object.values(onMain)) assert.equal(upstream.downloads(oid), 1);

    const all = await writer.run('AllRefs');
    assert.deepEqual(
      { ...all, error: undefined },
      { objects: 3, held: 2, fetched: 0, failed: 1, error: undefined },
    );
    assert.match(all.error!, /Object does not exist/);

    const refused = await (await prefetcher('refused')).run('Head', {
      ...repository,
      mirror: { access: 'Public', credentials: held('wrong') },
    });
    assert.equal(refused.held, 2, 'what the store has needs no upstream');
    const nothing = await (await prefetcher('refused-empty-store')).run('AllRefs', {
      ...repository,
      mirror: { access: 'Public', credentials: held('wrong') },
    });
    assert.equal(nothing.failed, 1);
    assert.match(nothing.error!, /answered 403/);
  });

  it('runs one prefetch at a time; a burst asked during a run costs one more run, with the latest settings', async () => {
    const queue = new PrefetchQueue({ logger: silentLogger() });
    const ran: string[] = [];
    const gate = Promise.withResolvers<void>();
    const job = (name: string, wait?: Promise<void>) => async () => {
      ran.push(name);
      await wait;
    };
    queue.request('a', job('a:Head', gate.promise));
    queue.request('b', job('b:Head'));
    queue.request('a', job('a:Head'));
    queue.request('a', job('a:AllRefs'));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(ran, ['a:Head'], 'b waits for the run under way');
    gate.resolve();
    await queue.idle();
    assert.deepEqual(ran, ['a:Head', 'b:Head', 'a:AllRefs']);
  });
});

function held(password: string): HeldCredentials {
  return new HeldCredentials({ username: 'cache', password }, { clock: systemClock, requestBoundMs: 60_000 });
}
