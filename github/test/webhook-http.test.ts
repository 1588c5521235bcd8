import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { signGitHubDelivery } from '../src/webhook.ts';
import { startWebhookServer } from '../src/webhook-http.ts';
import { type WebhookAnswer, WebhookReceiver, type WebhookTarget } from '../src/webhook-receiver.ts';

/** The receiver over real HTTP, as GitHub reaches it. */
describe('the webhook HTTP endpoint', () => {
  let server: Server;
  let base: string;
  const delivered: string[] = [];
  const answers: WebhookAnswer[] = [];
  const target: WebhookTarget = { name: 'team/repo', secret: 's3cret' };

  before(async () => {
    const receiver = new WebhookReceiver({
      clock: { now: Date.now },
      backend: {
        targetsFor: async (keys) => (keys.includes('github.com/org/repo') ? [target] : []),
        deliver: async (targets) => {
          delivered.push(...targets.map((t) => t.name));
          return targets.length;
        },
      },
    });
    server = await startWebhookServer({ host: '127.0.0.1', port: 0 }, receiver, (a) => answers.push(a));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const push = JSON.stringify({ repository: { clone_url: 'https://github.com/org/repo.git' } });
  const post = (path: string, body: string, headers: Record<string, string>) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...headers },
    });

  it('accepts a signed delivery with 202 and hands it on', async () => {
    const res = await post('/webhooks/github', push, {
      'x-github-event': 'push',
      'x-github-delivery': 'd-1',
      'x-hub-signature-256': signGitHubDelivery(push, 's3cret'),
    });
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { message: 'fetching', targets: 1 });
    assert.deepEqual(delivered, ['team/repo']);
    assert.equal(answers.at(-1)!.outcome, 'delivered');
  });

  it('answers 401 to an unsigned delivery, 404 elsewhere, 405 to GET, 413 past 25 MB', async () => {
    assert.equal((await post('/webhooks', push, { 'x-github-event': 'push' })).status, 401);
    assert.equal((await post('/other', push, {})).status, 404);
    assert.equal((await fetch(`${base}/webhooks/github`)).status, 405);
    const big = await post('/webhooks/github', 'x'.repeat(25 * 1024 * 1024 + 10), {
      'x-github-event': 'push',
      'x-hub-signature-256': signGitHubDelivery('x', 's3cret'),
    });
    assert.equal(big.status, 413);
    assert.deepEqual(delivered, ['team/repo'], 'nothing more was delivered');
  });

  it('refuses an unsigned delivery before reading its body, whatever its size', async () => {
    const unsigned = await post('/webhooks/github', 'x'.repeat(30 * 1024 * 1024), {
      'x-github-event': 'push',
    });
    assert.equal(unsigned.status, 401, 'not 413: the body was never read');
    assert.equal(answers.at(-1)!.outcome, 'unsigned');
  });
});
