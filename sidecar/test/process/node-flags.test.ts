import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SIDECAR_NODE_FLAGS } from '../../../testing/sidecar-process.ts';

test('tests and the benchmark run the sidecar with the node flags of the image’s command', () => {
  const dockerfile = readFileSync(new URL('../../../Dockerfile', import.meta.url), 'utf8');
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
  assert.ok(cmd, 'the Dockerfile has a CMD in exec form');
  assert.deepEqual(JSON.parse(cmd), ['node', ...SIDECAR_NODE_FLAGS, 'sidecar/src/main.ts']);
});
