import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { silentLogger } from '../../core/log.ts';
import { signGitHubDelivery } from '../../github/src/webhook.ts';
import { WebhookReceiver } from '../../github/src/webhook-receiver.ts';
import { AdminTokens } from '../src/sidecar/admin-token.ts';
import { type GitMirrorTarget, GitMirrorWebhooks } from '../src/webhooks/gitmirror-webhooks.ts';
import { harness, REPO_ID, REPO_URL, TOKEN_SECRET } from './fakes/harness.ts';

/**
 * Push webhooks as an operator replica receives them: deliveries are matched to GitMirrors by
 * repository, verified against each one's webhook Secret, and a verified one makes the fleet's
 * snapshot writer fetch (it tells the other members, which fetch from it) or, without a writer
 * that answers, every member; it is recorded in status. Anything else changes nothing.
 */

const SECRET = 'hook-s3cret';
const PUSH = JSON.stringify({
  ref: 'refs/heads/main',
  repository: { clone_url: 'https://github.com/Org/Repo.git', html_url: 'https://github.com/Org/Repo' },
});

type H = ReturnType<typeof harness>;

function setup(options: { pods?: string[]; webhookSecret?: Record<string, string> } = {}) {
  const h = harness();
  h.cluster.secrets.set(`ns/${TOKEN_SECRET}`, { token: 'tok' });
  h.sidecars.tokens.set('ns', 'tok');
  h.cluster.secrets.set('ns/hooks', options.webhookSecret ?? { webhookSecret: SECRET });
  h.cluster.addGitMirror('repo', { url: REPO_URL, webhookSecretRef: { name: 'hooks' } });
  for (const pod of options.pods ?? ['p1', 'p2']) h.cluster.addPod(pod);
  return { h, receiver: replica(h) };
}

/** The receiver of one operator replica over the shared fake cluster and sidecars. */
function replica(h: H): WebhookReceiver<GitMirrorTarget> {
  const backend = new GitMirrorWebhooks({
    api: h.cluster,
    stores: h.cluster.stores,
    sidecars: h.sidecars,
    tokens: new AdminTokens(h.cluster, TOKEN_SECRET),
    clock: h.clock,
    logger: silentLogger(),
    adminPort: 9090,
  });
  return new WebhookReceiver({ backend, clock: h.clock });
}

/** The fleet holds the mirror and serves it. */
async function warm(h: H, pods = ['p1', 'p2']): Promise<void> {
  await h.gm('repo');
  for (const pod of pods) h.sidecars.of(`ns/${pod}`).finish(REPO_ID);
  await h.gm('repo');
}

function push(
  receiver: WebhookReceiver<GitMirrorTarget>,
  options: { id?: string; secret?: string | null; body?: string; event?: string } = {},
) {
  const body = options.body ?? PUSH;
  const headers: Record<string, string> = {
    'x-github-event': options.event ?? 'push',
    'x-github-delivery': options.id ?? 'delivery-1',
    'content-type': 'application/json',
  };
  if (options.secret !== null)
    headers['x-hub-signature-256'] = signGitHubDelivery(body, options.secret ?? SECRET);
  return receiver.receive({ headers, body: Buffer.from(body) });
}

const fetches = (h: H) => h.sidecars.calls.filter((c) => c.method === 'fetch');
const webhookStatus = (h: H, name = 'repo') => h.cluster.gitMirrors.get('ns', name)?.status?.webhook;

describe('push webhooks in the operator', () => {
  test('a signed push makes the snapshot writer fetch, which tells the others, and is recorded in status', async () => {
    const { h, receiver } = setup();
    await warm(h);
    assert.equal(h.cluster.gitMirrors.get('ns', 'repo')?.status?.writer, 'p1');
    const answer = await push(receiver);
    assert.equal(answer.status, 202, JSON.stringify(answer.body));
    assert.deepEqual(answer.targets, ['ns/repo']);
    assert.deepEqual(
      fetches(h).map((c) => c.pod),
      ['ns/p1'],
      'only the writer asks upstream; its followers fetch from it',
    );
    assert.equal(h.sidecars.of('ns/p1').fetches, 1);
    assert.deepEqual(webhookStatus(h), {
      lastDeliveryTime: '2026-01-01T00:01:00Z',
      lastDeliveryID: 'delivery-1',
      lastEvent: 'push',
    });
    assert.deepEqual(answer.body.targets, [
      { gitmirror: 'ns/repo', members: 2, fetching: 1, via: 'writer', failed: [] },
    ]);
  });

  test('the specs tell the writer its followers and each follower its writer; a lone replica gets neither', async () => {
    const { h } = setup();
    await warm(h);
    const spec = (pod: string) => h.sidecars.of(`ns/${pod}`).specs.get(REPO_ID);
    const url = (pod: string) => h.sidecars.of(`ns/${pod}`).baseUrl;
    assert.deepEqual(spec('p1')?.fleet, { followers: [url('p2')] });
    assert.deepEqual(spec('p2')?.fleet, { writer: url('p1') });
    const alone = setup({ pods: ['solo'] });
    await warm(alone.h, ['solo']);
    assert.equal(alone.h.sidecars.of('ns/solo').specs.get(REPO_ID)?.fleet, undefined);
    await push(alone.receiver);
    assert.deepEqual(
      fetches(alone.h).map((c) => c.pod),
      ['ns/solo'],
    );
  });

  test('create and delete of refs fetch too; other events are acknowledged and change nothing', async () => {
    const { h, receiver } = setup();
    await warm(h);
    assert.equal((await push(receiver, { event: 'create', id: 'c' })).outcome, 'delivered');
    assert.equal((await push(receiver, { event: 'delete', id: 'd' })).outcome, 'delivered');
    assert.equal((await push(receiver, { event: 'issues', id: 'i' })).outcome, 'ignored');
    assert.equal((await push(receiver, { event: 'ping', id: 'p' })).status, 200);
    assert.equal(fetches(h).length, 2, "one fetch per delivery: the writer's");
    assert.equal(webhookStatus(h)?.lastDeliveryID, 'd');
  });

  test('unsigned, mis-signed, or for a GitMirror without a webhook Secret: 401, no fetch, no status', async () => {
    const { h, receiver } = setup();
    h.cluster.addGitMirror('no-hook', { url: 'https://github.com/org/plain.git' });
    await warm(h);
    const patches = h.cluster.statusPatches.length;
    const unsigned = await push(receiver, { secret: null });
    assert.equal(unsigned.status, 401);
    assert.equal(unsigned.outcome, 'unsigned');
    const wrong = await push(receiver, { secret: 'guessed' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.outcome, 'bad_signature');
    const plain = JSON.stringify({ repository: { clone_url: 'https://github.com/org/plain.git' } });
    assert.equal((await push(receiver, { body: plain })).status, 401);
    assert.deepEqual(fetches(h), []);
    assert.equal(h.cluster.statusPatches.length, patches);
    assert.equal(webhookStatus(h), undefined);
  });

  test('a webhook Secret without the webhookSecret key verifies nothing', async () => {
    const { h, receiver } = setup({ webhookSecret: { secret: SECRET } });
    await warm(h);
    assert.equal((await push(receiver)).status, 401);
    assert.deepEqual(fetches(h), []);
  });

  test('only the GitMirrors whose own secret verifies the delivery fetch', async () => {
    const { h, receiver } = setup();
    h.cluster.secrets.set('team/hooks', { webhookSecret: 'team-secret' });
    h.cluster.addGitMirror('repo', { url: REPO_URL, webhookSecretRef: { name: 'hooks' } }, 'team');
    h.cluster.addPod('t1', { namespace: 'team' });
    await warm(h);
    const answer = await push(receiver);
    assert.deepEqual(answer.targets, ['ns/repo']);
    assert.deepEqual(
      fetches(h).map((c) => c.pod),
      ['ns/p1'],
    );
  });

  test('a redelivery is a duplicate on any replica, once status shows it', async () => {
    const { h, receiver } = setup();
    await warm(h);
    await push(receiver);
    const other = replica(h);
    const again = await push(other);
    assert.equal(again.status, 200);
    assert.equal(again.outcome, 'duplicate');
    assert.equal(fetches(h).length, 1, 'no second round of fetches');
    assert.equal((await push(other, { id: 'delivery-2' })).outcome, 'delivered');
  });

  test('a writer that cannot be asked: every other member fetches, those without the mirror yet skipped; if none can be asked the delivery fails and may be sent again', async () => {
    const { h, receiver } = setup({ pods: ['p1', 'p2', 'new'] });
    await warm(h);
    h.sidecars.of('ns/new').restart();
    h.sidecars.of('ns/p1').down = true;
    const partly = await push(receiver);
    assert.equal(partly.status, 202);
    const [target] = partly.body.targets as { fetching: number; via: string; failed: string[] }[];
    assert.equal(target?.fetching, 1);
    assert.equal(target?.via, 'every member');
    assert.match(target?.failed.join() ?? '', /^pod p1: SIDECAR_UNREACHABLE/);
    // The writer was asked first; then every other member.
    assert.deepEqual(
      fetches(h).map((c) => c.pod),
      ['ns/p1', 'ns/p2', 'ns/new'],
    );
    assert.equal(h.sidecars.of('ns/p2').fetches, 1);

    for (const pod of ['p1', 'p2', 'new']) h.sidecars.of(`ns/${pod}`).down = true;
    const failed = await push(receiver, { id: 'delivery-2' });
    assert.equal(failed.status, 500);
    assert.match(
      String(failed.body.message),
      /no replica could be asked to fetch: pod p1: SIDECAR_UNREACHABLE/,
    );
    assert.equal(webhookStatus(h)?.lastDeliveryID, 'delivery-1', 'a failed delivery is not recorded');
    for (const pod of ['p1', 'p2']) h.sidecars.of(`ns/${pod}`).down = false;
    assert.equal((await push(receiver, { id: 'delivery-2' })).status, 202, 'redelivered');
  });

  test('a fleet with no running pod: accepted and recorded, nothing to fetch', async () => {
    const { h, receiver } = setup({ pods: [] });
    await h.gm('repo');
    const answer = await push(receiver);
    assert.equal(answer.status, 202);
    assert.equal(webhookStatus(h)?.lastDeliveryID, 'delivery-1');
  });

  test('a reconcile neither sends nor drops status.webhook', async () => {
    const { h, receiver } = setup();
    await warm(h);
    await push(receiver);
    const recorded = webhookStatus(h);
    h.sidecars.of('ns/p1').down = true; // the next reconcile changes status
    await h.gm('repo').catch(() => {});
    const patch = h.cluster.statusPatches.at(-1)!.patch;
    assert.ok(!('webhook' in patch), JSON.stringify(patch));
    assert.deepEqual(webhookStatus(h), recorded);
  });

  test('a rotated webhook secret applies within 30 s', async () => {
    const { h, receiver } = setup();
    await warm(h);
    assert.equal((await push(receiver, { id: 'a' })).status, 202);
    h.cluster.secrets.set('ns/hooks', { webhookSecret: 'rotated' });
    assert.equal(
      (await push(receiver, { id: 'b', secret: 'rotated' })).status,
      401,
      'the cached secret still holds',
    );
    h.clock.advance(30_000);
    assert.equal((await push(receiver, { id: 'c', secret: 'rotated' })).status, 202);
    assert.equal((await push(receiver, { id: 'd' })).status, 401);
  });
});
