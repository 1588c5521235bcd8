import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveInRoot } from './rootfs-path.ts';

describe('resolveInRoot: a mount path inside an image, never on the host', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'gitmirror-rootfs-path-'));
    await mkdir(join(root, 'run'));
    await mkdir(join(root, 'usr/lib'), { recursive: true });
    await symlink('/run', join(root, 'var-run')); // Debian's /var/run -> /run, absolute
    await mkdir(join(root, 'var'));
    await symlink('/run', join(root, 'var/run'));
    await symlink('usr/lib', join(root, 'lib')); // merged /usr, relative
    await symlink('../../../../../../etc', join(root, 'usr/escape'));
    await symlink('loop-b', join(root, 'loop-a'));
    await symlink('loop-a', join(root, 'loop-b'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('an absolute symlink restarts at the image root, not the host root', () => {
    assert.equal(
      resolveInRoot(root, '/var/run/secrets/kubernetes.io/serviceaccount'),
      '/run/secrets/kubernetes.io/serviceaccount',
    );
  });

  test('relative symlinks and plain dirs resolve as in the container', () => {
    assert.equal(resolveInRoot(root, '/lib/x86_64-linux-gnu'), '/usr/lib/x86_64-linux-gnu');
    assert.equal(resolveInRoot(root, '/data'), '/data');
    assert.equal(resolveInRoot(root, '/usr/./lib/../lib'), '/usr/lib');
  });

  test('.. and a symlink full of .. stop at the image root', () => {
    assert.equal(resolveInRoot(root, '/../../etc/passwd'), '/etc/passwd');
    assert.equal(resolveInRoot(root, '/usr/escape/hosts'), '/etc/hosts');
  });

  test('a symlink loop is an error, not a hang', () => {
    assert.throws(() => resolveInRoot(root, '/loop-a/x'), /too many levels/);
  });
});
