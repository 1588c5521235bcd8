import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT } from '../build.ts';
import { bundledVersions, findNodeDist } from '../node-dist.ts';

const CHANGELOG = [
  '<a id="24.21.0"></a>',
  '* \\[[`07faaee`](x)] - **deps**: update corepack to 0.36.0 (Bot)',
  '<a id="24.20.0"></a>',
  '* \\[[`c4e02f0`](x)] - **deps**: upgrade npm to 11.19.0 (npm team)',
  '<a id="24.19.0"></a>',
  '* \\[[`aaaaaaa`](x)] - **deps**: upgrade npm to 11.18.0 (npm team)',
  '* \\[[`bbbbbbb`](x)] - **deps**: update corepack to 0.35.0 (Bot)',
].join('\n');

describe('Node as the official image lays it out, from npm packages', () => {
  test('npm and corepack are the newest the changelog names at or below the release', () => {
    assert.deepEqual(bundledVersions(CHANGELOG, '24.21.0'), {
      npmVersion: '11.19.0',
      corepackVersion: '0.36.0',
    });
    assert.deepEqual(bundledVersions(CHANGELOG, '24.19.0'), {
      npmVersion: '11.18.0',
      corepackVersion: '0.35.0',
    });
    assert.throws(() => bundledVersions(CHANGELOG, '24.22.0'), /no entry for 24.22.0/);
  });

  test('the node@24 dev dependency brings the release binary and headers for this machine', async () => {
    const dist = await findNodeDist(REPO_ROOT);
    assert.equal(dist.version.split('.')[0], '24');
    assert.equal(dist.version, process.versions.node, 'npm scripts run on the same Node');
    for (const path of [
      'bin/node',
      'include/node/node_api.h',
      `include/node/openssl/archs/${dist.opensslArch}`,
    ])
      assert.ok(existsSync(join(dist.dir, path)), path);
    assert.match(dist.npmVersion, /^\d+\.\d+\.\d+$/);
    assert.match(dist.corepackVersion, /^\d+\.\d+\.\d+$/);
  });
});
