import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

describe('a cold mirror', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let bare: string;

  before(async () => {
    root = await tempDir();
    ({ bare } = await createUpstreamRepo(join(root, 'upstream', 'team'), 'service', 30));
    upstream = await startGitUpstream(join(root, 'upstream'));
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_ALLOWED_HOSTS: upstream.host,
    });
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  it('serves ten concurrent clones through one shared upstream response, then becomes a local mirror', async () => {
    // A slow upstream keeps the mirror cold while all ten clients negotiate.
    upstream.delayUploadPack(1500);
    const url = `${sidecar.gitUrl}/git/${upstream.host}/team/service.git`;
    const targets = Array.from({ length: 10 }, (_, i) => join(root, `clone-${i}`));
    await Promise.all(
      targets.map((t) => git(['-c', 'protocol.version=2', 'clone', '--quiet', '--bare', url, t])),
    );
    const expected = await refsOf(bare, 'refs/heads/');
    for (const target of targets) {
      assert.equal(await refsOf(target, 'refs/heads/'), expected);
      await git(['fsck'], { cwd: target });
    }
    assert.equal(
      upstream.packResponses({ viaCache: true }),
      1,
      'the ten clients were sent one pack from upstream',
    );
    assert.ok(upstream.packResponses({ viaCache: false }) <= 1, 'the mirror itself cloned at most once');

    const mirror = sidecar.mirrors.get(`${upstream.host}/team/service`)!;
    await waitFor('mirror ready', () => mirror.ready);
    upstream.delayUploadPack(0);
    const before = upstream.requests.length;
    await git(['clone', '--quiet', '--bare', url, join(root, 'warm')]);
    const packs = upstream.requests.slice(before).filter((r) => r.command === 'fetch').length;
    assert.equal(packs, 0, 'once ready, clones are served locally');
    await waitFor('spools removed', async () => (await readdir(join(root, 'data', 'spool'))).length === 0);
  });

  it('answers for a repository upstream does not have, without creating or cloning it on any request', async () => {
    const url = `${sidecar.gitUrl}/git/${upstream.host}/team/missing.git/info/refs?service=git-upload-pack`;
    for (let i = 0; i < 4; i++)
      assert.equal((await fetch(url)).status, 404, "upstream's answer reaches the client");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(sidecar.mirrors.get(`${upstream.host}/team/missing`), undefined, 'no mirror entry');
    const attempts = upstream.requests.filter((r) => !r.viaCache && r.path.includes('/missing')).length;
    assert.equal(
      attempts,
      0,
      'no clone was attempted (sidecar/test/http/on-demand-mirrors.test.ts has the rest)',
    );
  });
});
