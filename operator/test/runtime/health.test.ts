import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { startHealthServer } from '../../src/runtime/health.ts';
import { OperatorMetrics } from '../../src/runtime/metrics.ts';

describe('health server', () => {
  test('serves /healthz, /readyz from the checks and /metrics with controller-runtime names', async () => {
    let ready = false;
    const metrics = new OperatorMetrics();
    metrics.reconcileTotal.inc({ controller: 'gitmirror', result: 'success' });
    metrics.queueObserver('gitmirror').depth(3);
    metrics.reconcileTime.observe({ controller: 'gitmirror' }, 0.2);
    const server = await startHealthServer(
      { host: '127.0.0.1', port: 0 },
      { alive: () => true, ready: () => ready },
      metrics.registry,
    );
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      assert.equal((await fetch(`${base}/readyz`)).status, 503);
      ready = true;
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      const text = await (await fetch(`${base}/metrics`)).text();
      assert.match(text, /controller_runtime_reconcile_total\{controller="gitmirror",result="success"\} 1/);
      assert.match(text, /workqueue_depth\{name="gitmirror"\} 3/);
      assert.match(text, /controller_runtime_reconcile_time_seconds_bucket/);
      assert.equal((await fetch(`${base}/nope`)).status, 404);
    } finally {
      server.close();
    }
  });
});
