import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

describe('upstream redirects', () => {
  let root: string;
  let redirector: Server;
  let host: string;
  let sidecar: RunningSidecar;
  let target = '';
  let hits = 0;

  before(async () => {
    root = await tempDir();
    redirector = createServer((req, res) => {
      hits++;
      res.writeHead(301, { location: target.replace('{path}', req.url ?? '') }).end();
    });
    await new Promise<void>((r) => redirector.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(redirector.address() as AddressInfo).port}`;
    sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_HTTP_HOSTS: host,
      GITMIRROR_ALLOWED_HOSTS: `${host},github.com`,
    });
  });

  after(async () => {
    await sidecar.shutdown();
    redirector.close();
    await removeDir(root);
  });

  it('refuses a redirect to a host outside GITMIRROR_ALLOWED_HOSTS with 502, without following it', async () => {
    target = 'http://169.254.169.254/latest/meta-data{path}';
    const res = await fetch(`${sidecar.gitUrl}/git/${host}/org/moved.git/info/refs?service=git-upload-pack`, {
      redirect: 'manual',
    });
    assert.equal(res.status, 502);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'HOST_NOT_ALLOWED');
    assert.equal(res.headers.get('location'), null);
    assert.ok(hits >= 1, 'upstream was asked');
    assert.equal(sidecar.mirrors.list().length, 0, 'a redirect creates no mirror');
  });

  it('rewrites a redirect to an allowed host so the client stays on the cache', async () => {
    target = 'https://github.com/org/renamed.git/info/refs?service=git-upload-pack';
    const res = await fetch(
      `${sidecar.gitUrl}/git/${host}/org/old-name.git/info/refs?service=git-upload-pack`,
      {
        redirect: 'manual',
      },
    );
    assert.equal(res.status, 301);
    assert.equal(
      res.headers.get('location'),
      '/git/github.com/org/renamed.git/info/refs?service=git-upload-pack',
    );
    assert.equal(sidecar.mirrors.list().length, 0, 'a redirect creates no mirror');
  });
});
