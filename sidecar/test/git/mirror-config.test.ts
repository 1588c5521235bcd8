import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { type GitInvocation, type GitRunner, ProcessGitRunner } from '../../src/git/git-runner.ts';
import { applyMirrorConfig, mirrorConfigSettings } from '../../src/git/mirror-config.ts';

/** Counts the git processes applyMirrorConfig starts, and which keys it writes. */
function countingRunner(): { runner: GitRunner; writes: string[]; runs: () => number } {
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
    const expected = ['remote.origin.url', ...mirrorConfigSettings().map((s) => s.key)].filter(
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
});
