import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GIT_ENV, git } from '../../../testing/git.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { metricValue, scrape } from '../../../testing/metrics.ts';
import { type SidecarProcess, startSidecarProcess } from '../../../testing/sidecar-process.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import { createPackRepo } from './fixtures.ts';

function clone(url: string, target: string): Promise<number> {
  return new Promise((resolve) => {
    execFile('git', ['clone', '--bare', '--quiet', url, target], { env: GIT_ENV }, (err) =>
      resolve(err ? ((err as { code?: number }).code ?? 1) : 0),
    );
  });
}

/**
 * The sidecar process killed with SIGKILL while a pack cache generation is under way: its git
 * on PATH writes the first 64 KiB of every pack-objects' output, then holds the rest until a
 * release file exists, so the kill lands with a half-written entry on disk and clients
 * reading it. No client may take what it got for a whole pack, and the restarted sidecar
 * must neither serve the half-written entry nor keep it.
 */
describe('kill -9 of the sidecar during a pack cache generation', () => {
  let root: string;
  let upstream: GitUpstream;
  let release: string;
  const running: SidecarProcess[] = [];

  before(async () => {
    root = await tempDir();
    await createPackRepo(join(root, 'upstream', 'org'));
    upstream = await startGitUpstream(join(root, 'upstream'));
    const bin = join(root, 'bin');
    release = join(root, 'release');
    await mkdir(bin);
    const realGit = (await run('sh', ['-c', 'command -v git'])).trim();
    await writeFile(
      join(bin, 'git'),
      [
        '#!/bin/sh',
        'case " $* " in',
        `*" pack-objects "*) ${realGit} "$@" | { dd bs=65536 count=1 iflag=fullblock status=none; while [ ! -e '${release}' ]; do sleep 0.05; done; cat; }; exit ;;`,
        'esac',
        `exec ${realGit} "$@"`,
        '',
      ].join('\n'),
    );
    await chmod(join(bin, 'git'), 0o755);
  });

  after(async () => {
    await writeFile(release, '');
    for (const sidecar of running) await sidecar.stop('SIGKILL');
    await upstream.close();
    await removeDir(root);
  });

  const start = async () => {
    const sidecar = await startSidecarProcess({
      PATH: `${join(root, 'bin')}:${process.env.PATH}`,
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
    });
    running.push(sidecar);
    await sidecar.waitUntilOk('/readyz', { timeoutMs: 60_000 });
    return { sidecar, url: `${sidecar.gitUrl}/git/${upstream.host}/org/repo.git` };
  };

  it('fails every client, and the restart sweeps the entry and generates afresh', async () => {
    const first = await start();
    const packs = join(root, 'data', 'pack-cache');
    const targets = [0, 1, 2].map((i) => join(root, `client-${i}`));
    const clones = targets.map((t) => clone(first.url, t));
    await waitFor('three clients reading a generation', async () => {
      const text = await scrape(first.sidecar.adminUrl);
      const count = (result: string) => metricValue(text, 'gitmirror_pack_cache_requests_total', { result });
      return count('miss') === 1 && count('joined')! + count('hit')! === 2;
    });
    await waitFor('its first bytes on disk', async () => (await readdir(packs)).length === 1);
    await first.sidecar.stop('SIGKILL');
    assert.deepEqual(
      (await Promise.all(clones)).map((code) => code !== 0),
      [true, true, true],
      'no clone succeeds',
    );
    for (const target of targets) assert.equal(await readdir(target).catch(() => 'absent'), 'absent');
    // Let the orphaned generation finish into its file: the restart must still not serve it.
    await writeFile(release, '');
    const second = await start();
    assert.deepEqual(await readdir(packs), [], 'the half-written entry was swept at start');
    const retry = join(root, 'retry');
    assert.equal(await clone(second.url, retry), 0);
    await git(['fsck', '--strict', '--no-progress'], { cwd: retry });
    const text = await scrape(second.sidecar.adminUrl);
    assert.equal(metricValue(text, 'gitmirror_pack_cache_generations_total', { outcome: 'success' }), 1);
    assert.equal(metricValue(text, 'gitmirror_pack_cache_requests_total', { result: 'miss' }), 1);
  });
});

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(command, args, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
}
