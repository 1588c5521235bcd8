import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorStatus } from '../../../core/admin-api.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitHubStandIn, startGitHubStandIn } from '../../../testing/github-standin.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { waitFor } from '../../../testing/wait.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

/**
 * A standalone sidecar with a GitHub App (GITMIRROR_GITHUB_APP_FILE) against the GitHub
 * stand-in, whose git upstream takes only tokens it minted and that have not expired: the
 * mirror clones and fetches with installation tokens, renews them ahead of expiry, and an App
 * GitHub refuses shows GitHub's reason where the mirror's state is read.
 */
describe('standalone GitHub App credentials', () => {
  let root: string;
  let github: GitHubStandIn;
  let work: string;
  const sidecars: RunningSidecar[] = [];

  async function appFile(name: string, data: Record<string, string>): Promise<string> {
    const path = join(root, name);
    await writeFile(path, JSON.stringify(data));
    return path;
  }

  async function start(file: string, clock = new TestClock()): Promise<RunningSidecar> {
    const sidecar = await startTestSidecar(
      {
        GITMIRROR_DATA_DIR: join(root, `data-${sidecars.length}`),
        GITMIRROR_HTTP_HOSTS: github.host,
        GITMIRROR_MIRRORS: github.gitUrl('org/private.git'),
        GITMIRROR_GITHUB_APP_FILE: file,
        GITMIRROR_FETCH_TIMEOUT: '20s',
      },
      { clock, snapshots: async () => undefined },
    );
    sidecars.push(sidecar);
    return sidecar;
  }

  const mirrorOf = (sidecar: RunningSidecar): MirrorStatus =>
    sidecar.mirrors.get(`${github.host}/org/private`)!.status();

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(root, 'org/private', 3));
    github = await startGitHubStandIn(root, { tokenLifetimeSeconds: 120 });
  });

  after(async () => {
    for (const sidecar of sidecars) await sidecar.shutdown();
    await github.close();
    await removeDir(root);
  });

  it('clones and fetches with installation tokens, minting a new one once the held one is due for refresh', async () => {
    const app = github.createApp();
    const installation = github.install(app.appId);
    const file = await appFile('app.json', {
      githubAppID: app.appId,
      githubAppInstallationID: installation,
      githubAppPrivateKey: app.privateKeyPem,
      githubAppBaseURL: github.apiUrl,
    });
    const clock = new TestClock();
    const sidecar = await start(file, clock);
    await waitFor('the mirror cloned with an App token', () => mirrorOf(sidecar).ready);
    assert.equal(
      mirrorOf(sidecar).access,
      'Private',
      'a mirror with credentials serves only clients upstream accepts',
    );
    assert.equal(github.mints.filter((m) => m.source === 'api').length, 1);

    // 70 s later the 120 s token has under 60 s left: past its refresh point (half its life,
    // less up to 12 s of jitter). The next fetch mints, and upstream sees only valid tokens.
    clock.advance(70_000);
    github.setClockOffset(70_000);
    const head = await addCommit(work, 'next.txt', 'pushed\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    await sidecar.mirrors.fetch(sidecar.mirrors.get(`${github.host}/org/private`)!);
    assert.equal(mirrorOf(sidecar).head, head);
    assert.equal(github.mints.filter((m) => m.source === 'api').length, 2);
    await sidecar.mirrors.fetch(sidecar.mirrors.get(`${github.host}/org/private`)!);
    assert.equal(github.mints.filter((m) => m.source === 'api').length, 2, 'the new token is reused');
    assert.deepEqual(github.expiredTokenUses(), []);
    assert.ok(github.gitRequests.some((r) => r.auth === 'valid'));
    assert.ok(
      github.gitRequests.every((r) => r.auth === 'valid' || r.auth === 'none'),
      'only minted tokens',
    );
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(metrics, /gitmirror_github_token_mints_total\{outcome="success"\} 2/);
    github.setClockOffset(0);
  });

  it("shows GitHub's reason when it refuses the App (an uninstalled App), without the key", async () => {
    const app = github.createApp();
    const installation = github.install(app.appId);
    github.uninstall(installation);
    const file = await appFile('uninstalled.json', {
      githubAppID: app.appId,
      githubAppInstallationID: installation,
      githubAppPrivateKey: app.privateKeyPem,
      githubAppBaseURL: github.apiUrl,
    });
    const sidecar = await start(file);
    const failed = await waitFor(
      'the clone to fail',
      () => mirrorOf(sidecar).state === 'failed' && mirrorOf(sidecar),
    );
    const error = failed.restore.error ?? '';
    assert.match(error, /CREDENTIALS_UNAVAILABLE: no GitHub App token: GITHUB_APP_INSTALLATION_NOT_FOUND/);
    assert.match(error, /GitHub answered 404: Not Found/);
    assert.ok(!error.includes('PRIVATE KEY'));
  });

  it('refuses to start on an App file that is not one, naming the key and never quoting it', async () => {
    const file = await appFile('bad.json', {
      githubAppID: '1',
      githubAppInstallationID: '2',
      githubAppPrivateKey: '-----BEGIN RSA PRIVATE KEY-----\nnot-a-key-s3cr3t\n-----END RSA PRIVATE KEY-----',
    });
    await assert.rejects(
      start(file),
      (err) =>
        isGitMirrorError(err, 'CONFIG_INVALID') &&
        /GITMIRROR_GITHUB_APP_FILE: .*githubAppPrivateKey is not a PEM private key/.test(err.message) &&
        !err.message.includes('s3cr3t'),
    );
  });
});
