import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { type GitInvocation, type GitRunner, ProcessGitRunner } from '../../src/git/git-runner.ts';
import { type GitVersion, parseGitVersion } from '../../src/git/git-version.ts';
import { applyMirrorConfig, mirrorConfigSettings } from '../../src/git/mirror-config.ts';

/**
 * Counts the git processes applyMirrorConfig starts, and which keys it writes. `claims` makes
 * the real git report another version, for the settings that depend on it.
 */
function countingRunner(claims?: GitVersion): { runner: GitRunner; writes: string[]; runs: () => number } {
  const inner = new ProcessGitRunner();
  const writes: string[] = [];
  let runs = 0;
  const runner: GitRunner = {
    run: (invocation: GitInvocation) => {
      runs++;
      if (!invocation.args.includes('--list')) writes.push(invocation.args.at(-2)!);
      return inner.run(invocation);
    },
    spawn: (invocation) => inner.spawn(invocation),
    version: () => (claims ? Promise.resolve(claims) : inner.version()),
  };
  return { runner, writes, runs: () => runs };
}

describe('applyMirrorConfig', () => {
  let dir: string;
  const upstream = 'https://github.com/acme/app.git';
  before(async () => {
    dir = await tempDir();
    await git(['init', '--quiet', '--bare', dir]);
  });
  after(() => removeDir(dir));

  it('writes every setting a fresh repository lacks', async () => {
    const { runner, writes } = countingRunner();
    await applyMirrorConfig(runner, dir, upstream);
    // `git init --bare` already set core.bare.
    const installed = await new ProcessGitRunner().version();
    const expected = ['remote.origin.url', ...mirrorConfigSettings(installed).map((s) => s.key)].filter(
      (k) => k !== 'core.bare',
    );
    assert.deepEqual(writes, expected);
    assert.equal((await git(['config', '--file', `${dir}/config`, 'remote.origin.url'])).trim(), upstream);
    assert.equal((await git(['config', '--file', `${dir}/config`, 'uploadpack.allowFilter'])).trim(), 'true');
  });

  it('starts one git process when the repository already has every setting', async () => {
    const { runner, runs } = countingRunner();
    await applyMirrorConfig(runner, dir, upstream);
    assert.equal(runs(), 1);
  });

  it('rewrites only what differs: a changed value, a missing key, a key set twice', async () => {
    const file = `${dir}/config`;
    await git(['config', '--file', file, 'pack.windowMemory', '1g']);
    await git(['config', '--file', file, '--unset', 'gc.auto']);
    await git(['config', '--file', file, '--add', 'fetch.prune', 'false']);
    const { runner, writes } = countingRunner();
    await applyMirrorConfig(runner, dir, 'https://github.com/acme/other.git');
    assert.deepEqual(writes, ['remote.origin.url', 'gc.auto', 'fetch.prune', 'pack.windowMemory']);
    // The key that was set twice now holds exactly our value once.
    assert.equal((await git(['config', '--file', file, '--get-all', 'fetch.prune'])).trim(), 'true');
    assert.equal((await git(['config', '--file', file, 'pack.windowMemory'])).trim(), '256m');
  });

  it('works whatever directory the process runs in, even one git cannot open as a repository', async () => {
    // A git worktree's `.git` is a file pointing at the main checkout; in a container that
    // does not have it, every git call made from there that looks for a repository fails.
    const elsewhere = await tempDir();
    const fresh = await tempDir();
    const started = process.cwd();
    try {
      await writeFile(join(elsewhere, '.git'), 'gitdir: /nonexistent/.git/worktrees/checkout\n');
      await git(['init', '--quiet', '--bare', fresh]);
      process.chdir(elsewhere);
      await applyMirrorConfig(new ProcessGitRunner(), fresh, upstream);
    } finally {
      process.chdir(started);
    }
    assert.equal((await git(['config', '--file', `${fresh}/config`, 'remote.origin.url'])).trim(), upstream);
    await Promise.all([removeDir(elsewhere), removeDir(fresh)]);
  });
});

describe('mirror settings follow the git that runs', () => {
  const v2_39 = parseGitVersion('git version 2.39.5');
  const v2_42 = parseGitVersion('git version 2.42.0');
  const v2_47 = parseGitVersion('git version 2.47.3');
  const keys = (v: GitVersion) => new Map(mirrorConfigSettings(v).map((s) => [s.key, s.value]));

  it('git 2.39 (Debian 12, the image and the host tests) gets no key it does not know', () => {
    assert.equal(keys(v2_39).has('pack.allowPackReuse'), false);
    assert.equal(keys(v2_39).has('pack.useBitmapBoundaryTraversal'), false);
    assert.equal(keys(v2_42).get('pack.useBitmapBoundaryTraversal'), 'true');
    assert.equal(keys(v2_42).has('pack.allowPackReuse'), false);
  });

  it('git 2.44 and later reuse objects verbatim from every pack of the multi-pack bitmap', () => {
    assert.equal(keys(v2_47).get('pack.allowPackReuse'), 'multi');
    assert.equal(keys(v2_47).get('pack.useBitmapBoundaryTraversal'), 'true');
  });

  it('uploadpack.allowRefInWant stays off on every version (upload-pack orders v2 sections wrongly)', () => {
    for (const v of [v2_39, v2_47, parseGitVersion('git version 3.0.0')])
      assert.equal(keys(v).has('uploadpack.allowRefInWant'), false);
  });

  it('the installed git rejects pack.allowPackReuse=multi unless it is 2.44 or later', async (t) => {
    const installed = await new ProcessGitRunner().version();
    const dir = await tempDir();
    try {
      await git(['init', '--quiet', '--bare', dir]);
      if (installed.major > 2 || installed.minor >= 44) return t.skip(`git ${installed.text} knows "multi"`);
      const args = ['-C', dir, '-c', 'pack.allowPackReuse=multi', 'pack-objects', '--all', '--stdout'];
      const packing = spawnSync('git', args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: GIT_ENV,
        timeout: 30_000,
      });
      assert.notEqual(packing.status, 0);
      assert.match(packing.stderr.toString(), /allowpackreuse/i);
    } finally {
      await removeDir(dir);
    }
  });

  it('a mirror restored under an older git loses the newer git’s settings; a newer git writes them', async () => {
    const dir = await tempDir();
    try {
      await git(['init', '--quiet', '--bare', dir]);
      const file = `${dir}/config`;
      await applyMirrorConfig(countingRunner(v2_47).runner, dir, 'https://github.com/acme/app.git');
      assert.equal((await git(['config', '--file', file, 'pack.allowPackReuse'])).trim(), 'multi');
      await applyMirrorConfig(countingRunner(v2_39).runner, dir, 'https://github.com/acme/app.git');
      await assert.rejects(git(['config', '--file', file, 'pack.allowPackReuse']));
      await assert.rejects(git(['config', '--file', file, 'pack.useBitmapBoundaryTraversal']));
      // What the real git 2.39 then serves from this mirror works.
      await git(['-C', dir, 'pack-objects', '--all', '--stdout'], { input: '' });
    } finally {
      await removeDir(dir);
    }
  });
});
