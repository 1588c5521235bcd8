import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { silentLogger } from '../../../core/log.ts';
import { fleetPodInformer, gitMirrorInformer } from '../../src/kube/informers.ts';
import { ResilientInformer } from '../../src/runtime/informer.ts';

const pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'p1',
    namespace: 'ns',
    uid: 'u1',
    resourceVersion: '5',
    creationTimestamp: '2026-01-01T00:00:00Z',
    labels: { 'gitmirror.dev/cache': 'default' },
  },
  spec: { containers: [{ name: 'sidecar' }] },
  status: { phase: 'Running', podIP: '10.0.0.1', startTime: '2026-01-01T00:00:01Z' },
};

describe('client-node informers against an HTTP API server', () => {
  test('list, then watch: listed pods keep wire-form timestamps and watched objects reach the handlers', async () => {
    const urls: string[] = [];
    const watches: { url: string; res: ServerResponse }[] = [];
    const server = createServer((req, res) => {
      urls.push(req.url ?? '');
      if (req.url?.includes('watch=true')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('');
        watches.push({ url: req.url, res });
        return;
      }
      const items = req.url?.startsWith('/api/v1/pods') ? [pod] : [];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '10' }, items }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'c',
          server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          skipTLSVerify: true,
        },
      ],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const options = { logger: silentLogger(), resyncMs: 60_000 };
    const pods = new ResilientInformer(fleetPodInformer(kc, undefined), { ...options, name: 'pods' });
    const gms = new ResilientInformer(gitMirrorInformer(kc, 'ns'), { ...options, name: 'gms' });
    const seen: string[] = [];
    gms.onChange((gm) => seen.push(gm.metadata.name));
    try {
      await Promise.all([pods.start(), gms.start()]);
      assert.ok(pods.hasSynced() && gms.hasSynced());
      assert.ok(urls.some((u) => u.startsWith('/api/v1/pods?labelSelector=gitmirror.dev%2Fcache')));
      assert.ok(urls.some((u) => u.startsWith('/apis/gitmirror.dev/v1alpha1/namespaces/ns/gitmirrors')));
      const cached = pods.get('ns', 'p1');
      assert.equal(typeof cached?.metadata.creationTimestamp, 'string');
      assert.equal(Date.parse(cached?.status?.startTime ?? ''), Date.parse('2026-01-01T00:00:01Z'));
      const gm = {
        apiVersion: 'gitmirror.dev/v1alpha1',
        kind: 'GitMirror',
        metadata: { name: 'repo', namespace: 'ns', resourceVersion: '11' },
      };
      const gmWatch = watches.find((w) => w.url.includes('/gitmirrors'));
      gmWatch?.res.write(`${JSON.stringify({ type: 'ADDED', object: gm })}\n`);
      await sleep(50);
      assert.deepEqual(seen, ['repo']);
      assert.equal(gms.get('ns', 'repo')?.metadata.name, 'repo');
    } finally {
      await Promise.all([pods.stop(), gms.stop()]);
      for (const w of watches) w.res.end();
      server.close();
    }
  });
});
