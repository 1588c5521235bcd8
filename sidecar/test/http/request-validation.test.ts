import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

/** Sends a raw request path (no client-side normalisation, unlike fetch/URL). */
function rawRequest(base: string, method: string, path: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, method, path }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

describe('hostile and malformed git requests', () => {
  let root: string;
  let sidecar: RunningSidecar;

  before(async () => {
    root = await tempDir();
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_ALLOWED_HOSTS: 'github.com',
    });
  });

  after(async () => {
    await sidecar.shutdown();
    await removeDir(root);
  });

  const traversal = [
    '/git/github.com/../../etc/passwd/info/refs?service=git-upload-pack',
    '/git/github.com/org/../../../tmp/x/info/refs?service=git-upload-pack',
    '/git/github.com/%2e%2e/%2e%2e/etc/info/refs?service=git-upload-pack',
    '/git/github.com/org/%252e%252e/x/info/refs?service=git-upload-pack',
    '/git/github.com/org/..%2f..%2fx/info/refs?service=git-upload-pack',
    '/git//etc/passwd/info/refs?service=git-upload-pack',
    '/git/github.com//etc/passwd/info/refs?service=git-upload-pack',
    '/git/github.com/org/repo.git/../../x.git/git-upload-pack',
    '/git/github.com/org\\..\\x/info/refs?service=git-upload-pack',
    '/git/github.com/org/./repo/info/refs?service=git-upload-pack',
    '/git/github.com/a.git/b/info/refs?service=git-upload-pack',
    '/git/github.com/org/repo.lock/info/refs?service=git-upload-pack',
  ];
  for (const path of traversal) {
    it(`rejects ${path} with 400 and touches nothing`, async () => {
      const before = await listTree(join(root, 'data'));
      const { status, body } = await rawRequest(sidecar.gitUrl, 'GET', path);
      assert.equal(status, 400, body);
      assert.match(JSON.parse(body).error.code, /BAD_REPO_PATH/);
      assert.deepEqual(await listTree(join(root, 'data')), before);
      assert.equal(sidecar.mirrors.list().length, 0);
    });
  }

  it('refuses hosts outside GITMIRROR_ALLOWED_HOSTS with 403, for reads and pushes', async () => {
    for (const path of [
      '/git/evil.example/org/repo.git/info/refs?service=git-upload-pack',
      '/git/127.0.0.1:22/org/repo.git/git-upload-pack',
      '/git/169.254.169.254/latest/meta-data/info/refs?service=git-upload-pack',
      '/git/evil.example/org/repo.git/info/refs?service=git-receive-pack',
    ]) {
      const { status, body } = await rawRequest(
        sidecar.gitUrl,
        path.endsWith('upload-pack') ? 'POST' : 'GET',
        path,
      );
      assert.equal(status, 403, `${path}: ${body}`);
      assert.equal(JSON.parse(body).error.code, 'HOST_NOT_ALLOWED');
    }
    assert.equal(sidecar.mirrors.list().length, 0);
  });

  it('answers 404 for paths that are not git endpoints, and 400 for the dumb protocol', async () => {
    assert.equal(
      (await rawRequest(sidecar.gitUrl, 'GET', '/git/github.com/org/repo.git/objects/info/packs')).status,
      404,
    );
    assert.equal(
      (await rawRequest(sidecar.gitUrl, 'GET', '/git/github.com/org/repo.git/info/refs')).status,
      400,
    );
    assert.equal(
      (await rawRequest(sidecar.gitUrl, 'PUT', '/git/github.com/org/repo.git/info/refs')).status,
      405,
    );
    assert.equal((await rawRequest(sidecar.gitUrl, 'GET', '/etc/passwd')).status, 404);
  });
});
