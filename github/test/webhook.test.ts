import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type HeaderBag,
  isSigned,
  parseDelivery,
  providerOf,
  repositoryKey,
  signGitHubDelivery,
  verifyDelivery,
  WebhookError,
} from '../src/webhook.ts';
import {
  DeliveryLog,
  type WebhookBackend,
  WebhookReceiver,
  type WebhookTarget,
} from '../src/webhook-receiver.ts';

const SECRET = 'hook-secret-1';
const PUSH = JSON.stringify({
  ref: 'refs/heads/main',
  repository: {
    clone_url: 'https://github.com/Org/Repo.git',
    html_url: 'https://github.com/Org/Repo',
    ssh_url: 'git@github.com:Org/Repo.git',
  },
});

function githubHeaders(
  body: string,
  options: { event?: string; id?: string; secret?: string } = {},
): HeaderBag {
  return {
    'x-github-event': options.event ?? 'push',
    'x-github-delivery': options.id ?? '72d3162e-cc78-11e3-81ab-4c9367dc0958',
    'x-hub-signature-256': signGitHubDelivery(body, options.secret ?? SECRET),
    'content-type': 'application/json',
  };
}

describe('webhook signatures', () => {
  it("match GitHub's documented example", () => {
    const body = Buffer.from('Hello, World!');
    const headers = {
      'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
    };
    assert.equal(verifyDelivery('github', headers, body, "It's a Secret to Everybody"), true);
    assert.equal(signGitHubDelivery(body, "It's a Secret to Everybody"), headers['x-hub-signature-256']);
  });

  it('fail for another secret, another body, a truncated or malformed signature and an empty secret', () => {
    const body = Buffer.from(PUSH);
    const headers = githubHeaders(PUSH);
    assert.equal(verifyDelivery('github', headers, body, SECRET), true);
    assert.equal(verifyDelivery('github', headers, body, 'other'), false);
    assert.equal(verifyDelivery('github', headers, Buffer.from(`${PUSH} `), SECRET), false);
    const sig = headers['x-hub-signature-256'] as string;
    for (const bad of [sig.slice(0, -2), sig.replace('sha256=', 'sha1='), `${sig}00`, 'sha256=zz'])
      assert.equal(verifyDelivery('github', { 'x-hub-signature-256': bad }, body, SECRET), false, bad);
    assert.equal(verifyDelivery('github', headers, body, ''), false);
  });

  it("check GitLab's token header", () => {
    assert.equal(verifyDelivery('gitlab', { 'x-gitlab-token': SECRET }, Buffer.from('{}'), SECRET), true);
    assert.equal(
      verifyDelivery('gitlab', { 'x-gitlab-token': `${SECRET}x` }, Buffer.from('{}'), SECRET),
      false,
    );
  });

  it('tell unsigned requests apart before reading the body', () => {
    assert.equal(providerOf({ 'x-github-event': 'push' }), 'github');
    assert.equal(providerOf({ 'x-gitlab-event': 'Push Hook' }), 'gitlab');
    assert.equal(providerOf({}), undefined);
    assert.equal(isSigned('github', { 'x-github-event': 'push' }), false);
    assert.equal(isSigned('github', githubHeaders(PUSH)), true);
    assert.equal(isSigned('gitlab', { 'x-gitlab-event': 'Push Hook' }), false);
  });
});

describe('webhook payloads', () => {
  it('name the repository of a push, create and delete, and mark them as fetch triggers', () => {
    for (const event of ['push', 'create', 'delete']) {
      const delivery = parseDelivery('github', githubHeaders(PUSH, { event }), Buffer.from(PUSH));
      assert.equal(delivery.action, 'fetch');
      assert.deepEqual(delivery.repositories, ['github.com/org/repo']);
      assert.equal(delivery.id, '72d3162e-cc78-11e3-81ab-4c9367dc0958');
    }
    assert.equal(
      parseDelivery('github', githubHeaders(PUSH, { event: 'ping' }), Buffer.from(PUSH)).action,
      'ping',
    );
    assert.equal(
      parseDelivery('github', githubHeaders(PUSH, { event: 'issues' }), Buffer.from(PUSH)).action,
      'ignore',
    );
  });

  it('read form-encoded deliveries and GitLab pushes', () => {
    const form = `payload=${encodeURIComponent(PUSH)}`;
    const delivery = parseDelivery(
      'github',
      { ...githubHeaders(form), 'content-type': 'application/x-www-form-urlencoded' },
      Buffer.from(form),
    );
    assert.deepEqual(delivery.repositories, ['github.com/org/repo']);
    const gitlab = JSON.stringify({
      project: { git_http_url: 'https://gitlab.example.com/group/sub/proj.git' },
    });
    const parsed = parseDelivery(
      'gitlab',
      { 'x-gitlab-event': 'Tag Push Hook', 'x-gitlab-event-uuid': 'u1' },
      Buffer.from(gitlab),
    );
    assert.deepEqual(parsed, {
      provider: 'gitlab',
      event: 'Tag Push Hook',
      id: 'u1',
      action: 'fetch',
      repositories: ['gitlab.example.com/group/sub/proj'],
    });
  });

  it('are refused with 400 when they are not JSON objects naming a repository', () => {
    for (const body of ['nope', '[]', '{}', '{"repository":{"clone_url":"not a url"}}']) {
      assert.throws(
        () => parseDelivery('github', githubHeaders(body), Buffer.from(body)),
        (err: unknown) => err instanceof WebhookError && err.status === 400,
        body,
      );
    }
  });

  it('normalise repository URLs of every form to one key', () => {
    const key = 'github.com/org/repo';
    for (const url of [
      'https://github.com/org/repo',
      'https://github.com/Org/Repo.git',
      'https://github.com:443/org/repo/',
      'https://user@github.com/org/repo.git',
      'git@github.com:org/repo.git',
      'ssh://git@github.com/org/repo.git',
      'http://github.com/org/repo',
    ])
      assert.equal(repositoryKey(url), key, url);
    assert.equal(repositoryKey('http://127.0.0.1:8080/org/repo.git'), '127.0.0.1:8080/org/repo');
    assert.equal(repositoryKey('https://github.com/'), undefined);
    assert.equal(repositoryKey('file:///srv/repo.git'), undefined);
  });

  it('never throw anything but a 400 on arbitrary bodies and headers (property-based)', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.string(),
        fc.constantFrom('application/json', 'application/x-www-form-urlencoded'),
        (body, event, type) => {
          try {
            const delivery = parseDelivery(
              'github',
              { 'x-github-event': event, 'content-type': type },
              Buffer.from(body),
            );
            for (const key of delivery.repositories) assert.equal(key, key.toLowerCase());
          } catch (err) {
            assert.ok(err instanceof WebhookError && err.status === 400, String(err));
          }
        },
      ),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string(), (url) => {
        const key = repositoryKey(url);
        assert.ok(key === undefined || /^[^/]+\/.+/.test(key));
      }),
      { numRuns: 500 },
    );
  });
});

interface Target extends WebhookTarget {
  gitmirror: string;
}

function receiver(targets: Target[], options: { failDeliver?: number; handled?: Map<string, string> } = {}) {
  const clock = { t: 1_000, now: () => clock.t };
  const looked: string[][] = [];
  const delivered: { targets: string[]; event: string; at: number }[] = [];
  let failures = options.failDeliver ?? 0;
  const backend: WebhookBackend<Target> = {
    targetsFor: async (keys) => {
      looked.push([...keys]);
      return targets.filter((t) => keys.includes(t.gitmirror));
    },
    deliver: async (matched, delivery, at) => {
      if (failures-- > 0) throw new Error('no sidecar answered');
      delivered.push({ targets: matched.map((t) => t.name), event: delivery.event, at });
      return matched.map((t) => t.name);
    },
    alreadyHandled: options.handled && ((target, id) => options.handled?.get(target.name) === id),
  };
  return { receiver: new WebhookReceiver({ backend, clock }), looked, delivered, clock };
}

describe('the webhook receiver', () => {
  const repo: Target = { name: 'team/repo', gitmirror: 'github.com/org/repo', secret: SECRET };
  const send = (r: WebhookReceiver<Target>, body: string, headers: HeaderBag) =>
    r.receive({ headers, body: Buffer.from(body) });

  it('hands a signed push to every mirror of the repository whose secret verifies it', async () => {
    const other: Target = {
      name: 'other-ns/repo',
      gitmirror: 'github.com/org/repo',
      secret: 'another-secret',
    };
    const h = receiver([repo, other]);
    const answer = await send(h.receiver, PUSH, githubHeaders(PUSH));
    assert.equal(answer.status, 202);
    assert.equal(answer.outcome, 'delivered');
    assert.deepEqual(h.delivered, [{ targets: ['team/repo'], event: 'push', at: 1_000 }]);
  });

  it('refuses unsigned deliveries with 401 without looking anything up', async () => {
    const h = receiver([repo]);
    const { 'x-hub-signature-256': _, ...unsigned } = githubHeaders(PUSH) as Record<string, string>;
    for (const headers of [unsigned, {}, { 'content-type': 'application/json' }]) {
      const answer = await send(h.receiver, PUSH, headers);
      assert.equal(answer.status, 401);
      assert.equal(answer.outcome, 'unsigned');
    }
    assert.deepEqual(h.looked, []);
    assert.deepEqual(h.delivered, []);
  });

  it('refuses mis-signed deliveries, and deliveries for unmirrored repositories, with the same 401', async () => {
    const h = receiver([repo]);
    const wrong = await send(h.receiver, PUSH, githubHeaders(PUSH, { secret: 'guess' }));
    const stranger = JSON.stringify({ repository: { clone_url: 'https://github.com/org/unmirrored.git' } });
    const unknown = await send(h.receiver, stranger, githubHeaders(stranger));
    assert.equal(wrong.status, 401);
    assert.deepEqual(unknown.body, wrong.body, 'tells nobody what is mirrored');
    assert.deepEqual(h.delivered, []);
  });

  it('acts once per delivery id; a forged request cannot use up an id', async () => {
    const h = receiver([repo]);
    const forged = await send(h.receiver, PUSH, githubHeaders(PUSH, { secret: 'guess' }));
    assert.equal(forged.status, 401);
    assert.equal((await send(h.receiver, PUSH, githubHeaders(PUSH))).outcome, 'delivered');
    const again = await send(h.receiver, PUSH, githubHeaders(PUSH));
    assert.equal(again.status, 200);
    assert.equal(again.outcome, 'duplicate');
    assert.equal((await send(h.receiver, PUSH, githubHeaders(PUSH, { id: 'another' }))).outcome, 'delivered');
    assert.equal(h.delivered.length, 2);
  });

  it('treats a delivery another replica recorded as a duplicate, and hands a partly recorded one to the rest', async () => {
    const other: Target = { name: 'other-ns/repo', gitmirror: 'github.com/org/repo', secret: SECRET };
    const handled = new Map([['team/repo', 'delivery-1']]);
    const h = receiver([repo, other], { handled });
    const partly = await send(h.receiver, PUSH, githubHeaders(PUSH, { id: 'delivery-1' }));
    assert.equal(partly.outcome, 'delivered');
    assert.deepEqual(h.delivered.at(-1)?.targets, ['other-ns/repo']);
    handled.set('other-ns/repo', 'delivery-2');
    handled.set('team/repo', 'delivery-2');
    const redelivered = await send(h.receiver, PUSH, githubHeaders(PUSH, { id: 'delivery-2' }));
    assert.equal(redelivered.status, 200);
    assert.equal(redelivered.outcome, 'duplicate');
    assert.equal(h.delivered.length, 1);
  });

  it('answers ping and ignores events that move no ref, without fetching', async () => {
    const h = receiver([repo]);
    assert.equal((await send(h.receiver, PUSH, githubHeaders(PUSH, { event: 'ping' }))).status, 200);
    const issues = await send(h.receiver, PUSH, githubHeaders(PUSH, { event: 'issues', id: 'i' }));
    assert.equal(issues.status, 202);
    assert.equal(issues.outcome, 'ignored');
    assert.deepEqual(h.delivered, []);
  });

  it('lets a delivery that could not be handed on be redelivered', async () => {
    const h = receiver([repo], { failDeliver: 1 });
    const failed = await send(h.receiver, PUSH, githubHeaders(PUSH));
    assert.equal(failed.status, 500);
    assert.equal((await send(h.receiver, PUSH, githubHeaders(PUSH))).outcome, 'delivered');
  });

  it('refuses oversized and malformed payloads without acting', async () => {
    const h = receiver([repo]);
    const big = 'x'.repeat(25 * 1024 * 1024 + 1);
    assert.equal((await send(h.receiver, big, githubHeaders('x'))).status, 413);
    assert.equal((await send(h.receiver, 'nope', githubHeaders('nope'))).status, 400);
    assert.deepEqual(h.delivered, []);
  });
});

describe('the delivery log', () => {
  it('forgets the oldest ids beyond its bound and ids older than its age', () => {
    const clock = { t: 0, now: () => clock.t };
    const log = new DeliveryLog({ clock, maxEntries: 3, ttlMs: 1_000 });
    for (const id of ['a', 'b', 'c', 'd']) assert.equal(log.claim(id), true);
    assert.equal(log.claim('d'), false);
    assert.equal(log.claim('a'), true, 'a was evicted by d');
    clock.t = 1_000;
    assert.equal(log.claim('d'), true, 'expired');
  });
});
