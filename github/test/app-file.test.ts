import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeDir, tempDir } from '../../testing/temp-dir.ts';
import { appIdentity } from '../src/app.ts';
import { loadGitHubAppFile } from '../src/app-file.ts';
import { isGitHubError } from '../src/errors.ts';

const PEM = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs1', format: 'pem' })
  .toString();

describe('a GitHub App from a file (standalone sidecar)', () => {
  let dir: string;

  before(async () => {
    dir = await tempDir('gitmirror-app-file-');
  });
  after(() => removeDir(dir));

  it('reads a JSON file with the Secret keys, numbers allowed for ids', async () => {
    const file = join(dir, 'app.json');
    await writeFile(
      file,
      JSON.stringify({
        githubAppID: 42,
        githubAppInstallationID: 7,
        githubAppPrivateKey: PEM,
        githubAppBaseURL: 'https://ghe.corp/api/v3',
      }),
    );
    const { app, gitHost } = await loadGitHubAppFile(file);
    assert.equal(app.appId, '42');
    assert.equal(app.installationId, '7');
    assert.equal(gitHost, 'ghe.corp');
  });

  it('reads a mounted Secret: one file per key', async () => {
    const mount = join(dir, 'secret');
    await mkdir(mount);
    await writeFile(join(mount, 'githubAppID'), '42\n');
    await writeFile(join(mount, 'githubAppInstallationID'), '7');
    await writeFile(join(mount, 'githubAppPrivateKey'), PEM);
    const { app, gitHost } = await loadGitHubAppFile(mount);
    assert.equal(gitHost, 'github.com');
    assert.equal(appIdentity(app).split('|').slice(1, 3).join('|'), '42|7');
  });

  it('fails with the path and the missing key, never a value', async () => {
    const file = join(dir, 'broken.json');
    await writeFile(file, `{"githubAppID": 1, "githubAppPrivateKey": ${JSON.stringify(PEM.slice(0, 200))}`);
    for (const [path, message] of [
      [file, /is neither JSON nor a directory/],
      [join(dir, 'missing.json'), /cannot read GitHub App file .*missing\.json: ENOENT/],
    ] as const) {
      await assert.rejects(loadGitHubAppFile(path), (err: unknown) => {
        assert.ok(isGitHubError(err, 'GITHUB_APP_INVALID'));
        assert.match(err.message, message);
        assert.ok(!err.message.includes('PRIVATE KEY'));
        return true;
      });
    }
    await writeFile(file, JSON.stringify({ githubAppID: 1, githubAppPrivateKey: PEM }));
    await assert.rejects(loadGitHubAppFile(file), /lacks githubAppInstallationID/);
  });
});
