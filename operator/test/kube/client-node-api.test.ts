import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { isOperatorError } from '../../src/errors/operator-error.ts';
import { ClientNodeKubeApi } from '../../src/kube/client-node-api.ts';

interface Seen {
  method: string;
  url: string;
  contentType: string;
  body: unknown;
}

/** A stand-in API server: records each request and answers with the next scripted reply. */
class FakeApiServer {
  readonly seen: Seen[] = [];
  readonly replies: { status: number; body: unknown }[] = [];
  server!: Server;

  async start(): Promise<string> {
    this.server = createServer(async (req: IncomingMessage, res) => {
      let text = '';
      for await (const chunk of req) text += chunk;
      this.seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body: text ? JSON.parse(text) : undefined,
      });
      const reply = this.replies.shift() ?? { status: 200, body: {} };
      res.writeHead(reply.status, { 'content-type': 'application/json' }).end(JSON.stringify(reply.body));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

const fake = new FakeApiServer();
let api: ClientNodeKubeApi;

before(async () => {
  const server = await fake.start();
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'sa-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  api = new ClientNodeKubeApi(kc);
});

after(() => fake.server.close());

function last(): Seen {
  return fake.seen.at(-1)!;
}

describe('ClientNodeKubeApi against an HTTP API server', () => {
  test('GitMirror status goes to the status subresource as a JSON merge patch', async () => {
    await api.patchGitMirrorStatus('ns', 'repo', { writer: null, replicas: { total: 1, warm: 1 } });
    assert.equal(last().method, 'PATCH');
    assert.equal(last().url, '/apis/gitmirror.dev/v1alpha1/namespaces/ns/gitmirrors/repo/status');
    assert.equal(last().contentType, 'application/merge-patch+json');
    assert.deepEqual(last().body, { status: { writer: null, replicas: { total: 1, warm: 1 } } });
  });

  test('finalizers are merge-patched with the resourceVersion as precondition', async () => {
    fake.replies.push({ status: 200, body: { metadata: { name: 'repo', finalizers: ['f'] } } });
    const gm = await api.setGitMirrorFinalizers('ns', 'repo', ['f'], '42');
    assert.equal(last().url, '/apis/gitmirror.dev/v1alpha1/namespaces/ns/gitmirrors/repo');
    assert.equal(last().contentType, 'application/merge-patch+json');
    assert.deepEqual(last().body, { metadata: { finalizers: ['f'], resourceVersion: '42' } });
    assert.deepEqual(gm.metadata.finalizers, ['f']);
  });

  test('a 409 becomes KUBE_CONFLICT, AlreadyExists its own code, 404 KUBE_NOT_FOUND', async () => {
    fake.replies.push({
      status: 409,
      body: { kind: 'Status', reason: 'Conflict', message: 'the object has been modified' },
    });
    await assert.rejects(api.setGitMirrorFinalizers('ns', 'repo', [], '1'), (err) => {
      assert.ok(isOperatorError(err, 'KUBE_CONFLICT'));
      assert.match(err.message, /the object has been modified/);
      assert.doesNotMatch(err.message, /sa-token|Headers/);
      return true;
    });
    fake.replies.push({ status: 409, body: { kind: 'Status', reason: 'AlreadyExists', message: 'exists' } });
    await assert.rejects(api.createSecret('ns', 's', { token: 'x' }, {}), (err) =>
      isOperatorError(err, 'KUBE_ALREADY_EXISTS'),
    );
    fake.replies.push({ status: 404, body: { kind: 'Status', reason: 'NotFound' } });
    assert.equal(await api.readSecret('ns', 'missing'), undefined);
  });

  test('the warm condition is a strategic-merge patch of pods/status with only that condition and the uid', async () => {
    fake.replies.push({ status: 200, body: { metadata: { name: 'p1' } } });
    const condition = {
      type: 'gitmirror.dev/warm',
      status: 'True' as const,
      reason: 'Warm',
      message: 'ok',
      lastTransitionTime: '2026-01-01T00:00:00Z',
      lastProbeTime: null,
    };
    await api.patchPodCondition('ns', 'p1', 'uid-1', condition);
    assert.equal(last().url, '/api/v1/namespaces/ns/pods/p1/status');
    assert.equal(last().contentType, 'application/strategic-merge-patch+json');
    assert.deepEqual(last().body, { metadata: { uid: 'uid-1' }, status: { conditions: [condition] } });
  });

  test('Secrets are read and written base64-encoded', async () => {
    fake.replies.push({ status: 200, body: { data: { password: Buffer.from('pw').toString('base64') } } });
    assert.deepEqual(await api.readSecret('ns', 'upstream'), { password: 'pw' });
    fake.replies.push({ status: 201, body: {} });
    await api.createSecret('ns', 'tok', { token: 'abc' }, { app: 'x' });
    assert.equal(last().url, '/api/v1/namespaces/ns/secrets');
    assert.deepEqual(last().body, {
      metadata: { name: 'tok', namespace: 'ns', labels: { app: 'x' } },
      type: 'Opaque',
      data: { token: Buffer.from('abc').toString('base64') },
    });
  });

  test('Events and Leases carry MicroTime with six fractional digits', async () => {
    fake.replies.push({ status: 201, body: {} });
    await api.createEvent({
      regarding: { apiVersion: 'v1', kind: 'Pod', namespace: 'ns', name: 'p1', uid: 'u' },
      type: 'Normal',
      reason: 'Warm',
      action: 'Warmup',
      note: 'ok',
      eventTime: new Date('2026-01-01T00:00:00.123Z'),
      reportingController: 'gitmirror.dev/operator',
      reportingInstance: 'op-0',
    });
    assert.equal(last().url, '/apis/events.k8s.io/v1/namespaces/ns/events');
    const event = last().body as {
      eventTime: string;
      reportingController: string;
      metadata: { name: string };
    };
    assert.equal(event.eventTime, '2026-01-01T00:00:00.123000Z');
    assert.equal(event.reportingController, 'gitmirror.dev/operator');
    assert.match(event.metadata.name, /^p1\.[0-9a-f]{16}$/);
    const time = new Date('2026-01-01T00:00:01.5Z');
    fake.replies.push({
      status: 200,
      body: {
        metadata: { name: 'l', resourceVersion: '7' },
        spec: { holderIdentity: 'a', renewTime: '2026-01-01T00:00:01.500000Z' },
      },
    });
    const lease = await api.replaceLease('ops', {
      metadata: { name: 'l', resourceVersion: '6' },
      spec: { holderIdentity: 'a', renewTime: time, acquireTime: time },
    });
    const sent = last().body as { spec: { renewTime: string }; metadata: { resourceVersion: string } };
    assert.equal(last().method, 'PUT');
    assert.equal(sent.spec.renewTime, '2026-01-01T00:00:01.500000Z');
    assert.equal(sent.metadata.resourceVersion, '6');
    assert.equal(lease.spec.renewTime?.getTime(), time.getTime());
    assert.equal(lease.metadata.resourceVersion, '7');
  });

  test('an unreachable API server is KUBE_UNAVAILABLE', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'http://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await assert.rejects(new ClientNodeKubeApi(kc).readLease('ops', 'l'), (err) =>
      isOperatorError(err, 'KUBE_UNAVAILABLE'),
    );
  });
});
