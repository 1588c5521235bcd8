import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { prng } from '../../sidecar/demo/synthetic-repo.ts';
import { git } from '../../testing/git.ts';
import { commitLfsFiles, lfsEnvironment } from '../../testing/lfs-client.ts';
import { waitFor } from '../../testing/wait.ts';
import { LFS_REPO, parseLfsPointer, startLfsUpstream, verifyLfsCheckout } from './lfs.ts';
import { parseRefs, RefHistory } from './ref-history.ts';

/**
 * The LFS operation's check on real git-lfs checkouts (made locally by git-lfs's clean
 * filter, no server): what passes, and each way a client's LFS files can be wrong.
 */
describe('the soak’s LFS checkout check', () => {
  let root: string;
  let work: string;
  let held: Map<string, number>;
  const files = { 'assets/a.bin': randomBytes(70_000), 'assets/b.bin': randomBytes(1000) };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'gitmirror-soak-lfs-'));
    const env = await lfsEnvironment(join(root, 'home'));
    work = join(root, 'work');
    await git(['init', '--quiet', '--initial-branch=main', work], { env });
    await writeFile(join(work, 'README'), 'not LFS\n');
    await git(['add', 'README'], { cwd: work, env });
    const ids = await commitLfsFiles(work, files, env);
    held = new Map(Object.values(ids).map(({ oid, size }) => [oid, size]));
  });

  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('passes a checkout whose every LFS file is the object upstream holds', async () => {
    assert.deepEqual(await verifyLfsCheckout(work, held), { objects: 2 });
  });

  it('fails a file left as its pointer (git-lfs never smudged it)', async () => {
    const pointer = await git(['cat-file', 'blob', 'HEAD:assets/a.bin'], { cwd: work });
    assert.ok(parseLfsPointer(pointer));
    await writeFile(join(work, 'assets/a.bin'), pointer);
    try {
      const check = await verifyLfsCheckout(work, held);
      assert.equal(check.objects, 2);
      assert.match(check.problem ?? '', /^assets\/a\.bin has \d+ bytes, sha256 .*; its pointer says 70000/);
    } finally {
      await writeFile(join(work, 'assets/a.bin'), files['assets/a.bin']);
    }
  });

  it('fails a file whose bytes are not its object’s, even at the same size', async () => {
    const other = Buffer.from(files['assets/b.bin']);
    other[500] = (other[500]! + 1) % 256;
    await writeFile(join(work, 'assets/b.bin'), other);
    try {
      assert.match((await verifyLfsCheckout(work, held)).problem ?? '', /^assets\/b\.bin has 1000 bytes/);
    } finally {
      await writeFile(join(work, 'assets/b.bin'), files['assets/b.bin']);
    }
  });

  it('fails an object upstream does not hold', async () => {
    const partial = new Map([...held].slice(1));
    assert.match((await verifyLfsCheckout(work, partial)).problem ?? '', /upstream never held/);
  });

  it('fails a checkout without LFS files', async () => {
    const plain = join(root, 'plain');
    await git(['init', '--quiet', plain]);
    await writeFile(join(plain, 'x.txt'), 'x\n');
    await git(['add', 'x.txt'], { cwd: plain });
    await git(['commit', '--quiet', '-m', 'x'], { cwd: plain });
    assert.deepEqual(await verifyLfsCheckout(plain, held), {
      objects: 0,
      problem: 'no LFS file in the checkout',
    });
  });

  it('reads only pointers in git-lfs’s one form', () => {
    const oid = 'a'.repeat(64);
    const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize 12\n`;
    assert.deepEqual(parseLfsPointer(pointer), { oid, size: 12 });
    assert.equal(parseLfsPointer(pointer.replace('size 12', 'size x')), undefined);
    assert.equal(parseLfsPointer(`hello\n${pointer}`), undefined);
  });
});

/** The LFS upstream the soak runs (git-lfs's lfstest-gitserver, from `npm run e2e`'s tools). */
describe('the soak’s LFS upstream', () => {
  it('records every push as one state of main, and a clone of any state checks out objects it holds', async () => {
    const root = await mkdtemp(join(tmpdir(), 'gitmirror-soak-lfs-upstream-'));
    const upstream = await startLfsUpstream({
      listenHost: '127.0.0.1',
      dir: root,
      random: prng(7),
      intervalMs: { min: 300, max: 600 },
      log: () => undefined,
    });
    try {
      assert.equal(upstream.pusher.totals().objects, 8);
      upstream.pusher.start();
      await waitFor('two pushes', () => upstream.pusher.history.latest >= 2, { timeoutMs: 60_000 });
      await upstream.pusher.stop();
      const { history } = upstream.pusher;
      assert.equal(upstream.pusher.errors, 0);
      assert.ok(history.latest >= 2, `${history.latest} pushes`);
      assert.equal(upstream.pusher.totals().objects, 8 + history.latest);
      const clone = join(root, 'clone');
      // Through the forwarder the pods use, as a client of upstream itself.
      await git(['clone', '--quiet', `http://${upstream.host}/${LFS_REPO}.git`, clone], {
        env: upstream.clientEnv,
      });
      const refs = parseRefs(await git(['ls-remote', clone]));
      assert.equal(
        history.indexOf(new Map([['refs/heads/main', refs.get('refs/heads/main')!]])),
        history.latest,
      );
      assert.deepEqual(await verifyLfsCheckout(clone, upstream.pusher.held), { objects: 8 });
      assert.ok(RefHistory.fromJson(history.toJSON()).indexOf(history.refs()) === history.latest);
    } finally {
      await upstream.stop();
      await rm(root, { recursive: true, force: true });
    }
  });
});
