import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../testing/git-repos.ts';
import { type GitHubStandIn, type StandInApp, startGitHubStandIn } from '../../testing/github-standin.ts';
import { type Environment, NAMESPACE, startEnvironment } from './support/environment.ts';
import {
  applyGitMirror,
  cloneThrough,
  fleetPods,
  getGitMirror,
  kubectlJson,
  operatorPods,
  sidecarMirrors,
} from './support/gitmirror.ts';
import { waitFor } from './support/poll.ts';
import {
  type ArgvReport,
  canaryNeedles,
  findCanary,
  type Hit,
  type Needle,
  redact,
  sampleArgv,
  scanTree,
} from './support/secrecy.ts';

/**
 * GitHub App credentials and push webhooks on the real control plane, against the GitHub
 * stand-in (testing/github-standin.ts: it verifies the App JWT's RS256 signature and claims as
 * GitHub does, issues 90-second installation tokens here, and its git upstream takes only
 * unexpired tokens it minted). Clients authenticate with tokens of their own, as CI jobs do.
 * Every token starts with one random prefix, so the secrecy checks look for all of them, and
 * for a line of the App's private key, in argv, pod files, API objects and /metrics.
 */

const REPO = 'org/app';
const SECRET = 'github-app';
const WEBHOOK_SECRET = `whsec-${randomBytes(12).toString('hex')}`;
const TOKEN_PREFIX = `ghs_gmcanary${randomBytes(4).toString('hex')}`;
const TOKEN_LIFETIME_S = 90;
/** Long enough for four rotations of 90-second tokens. */
const ROTATION_RUN_MS = 200_000;
const WARM_TIMEOUT_MS = 240_000;

interface GitHubMirror {
  metadata: { name: string };
  status?: {
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    replicas?: { total: number; warm: number };
    githubApp?: { tokenExpiresTime?: string; refreshTime?: string; lastMintTime?: string };
    webhook?: { lastDeliveryTime?: string; lastDeliveryID?: string; lastEvent?: string };
  };
}

describe('GitHub App credentials and push webhooks on the real control plane', { timeout: 1_500_000 }, () => {
  let env: Environment;
  let gh: Environment;
  let github: GitHubStandIn;
  let app: StandInApp;
  let installation: string;
  let root: string;
  let needles: Needle[];
  let sampler: { stop(): Promise<ArgvReport> } | undefined;
  let argv: ArgvReport | undefined;
  const appSecrets: string[] = [SECRET];

  const mirrorId = (repo: string) => `${github.host}/${repo}`;
  const clientToken = () => ({ user: 'x-access-token', password: github.issueToken(installation) });
  const gitMirror = (name: string) =>
    kubectlJson<GitHubMirror>(env, ['get', 'gitmirror', name, '-n', NAMESPACE]);
  const cond = (gm: GitHubMirror, type: string) => gm.status?.conditions?.find((c) => c.type === type);

  /** Each pod's head of the mirror, from its admin API (asking no upstream, unlike a client). */
  async function heads(pods: string[]): Promise<string[]> {
    const mirrors = await Promise.all(pods.map((pod) => sidecarMirrors(env, pod)));
    return mirrors.map((list) => list.find((m) => m.id === mirrorId(REPO))?.head ?? '');
  }

  const podNames = async () => (await fleetPods(env)).map((p) => p.metadata.name);

  async function applySecret(name: string, data: Record<string, string>): Promise<void> {
    await env.cluster.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: data }),
    });
  }

  const appData = (overrides: Record<string, string> = {}) => ({
    githubAppID: app.appId,
    githubAppInstallationID: installation,
    githubAppPrivateKey: app.privateKeyPem,
    githubAppBaseURL: github.apiUrl,
    ...overrides,
  });

  /** A delivery as GitHub sends it: HMAC-SHA256 of the raw body, hex, in X-Hub-Signature-256. */
  async function deliver(options: {
    operatorPod: string;
    id?: string;
    signature?: 'good' | 'none' | 'wrong';
  }): Promise<{ status: number; body: string }> {
    const body = JSON.stringify({
      ref: 'refs/heads/main',
      repository: {
        full_name: REPO,
        clone_url: github.gitUrl(`${REPO}.git`),
        html_url: github.gitUrl(REPO),
        private: true,
      },
    });
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/e2e',
      'x-github-event': 'push',
      'x-github-delivery': options.id ?? randomUUID(),
    };
    const secret = options.signature === 'wrong' ? 'not-the-secret' : WEBHOOK_SECRET;
    if (options.signature !== 'none')
      headers['x-hub-signature-256'] = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    const base = await env.cluster.podUrl(NAMESPACE, options.operatorPod, 8082);
    const res = await fetch(`${base}/webhooks`, {
      method: 'POST',
      headers,
      body,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: await res.text() };
  }

  async function pushUpstream(content: string): Promise<string> {
    const work = join(root, `${REPO}-work`);
    const head = await addCommit(work, 'pushed.txt', `${content}\n`);
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    return head;
  }

  before(async () => {
    env = await startEnvironment([]);
    root = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-github-'));
    for (const repo of [REPO, 'org/revoked']) await createUpstreamRepo(root, repo, 10);
    github = await startGitHubStandIn(root, {
      listenHost: env.cluster.hostAddress,
      tokenLifetimeSeconds: TOKEN_LIFETIME_S,
      tokenPrefix: TOKEN_PREFIX,
    });
    app = github.createApp();
    installation = github.install(app.appId);
    gh = { ...env, mirrorId };
    // A line from the middle of the key's base64 body: every copy of the key holds it.
    const keyLine = app.privateKeyPem.split('\n')[10]!;
    needles = [
      ...canaryNeedles('x-access-token', TOKEN_PREFIX).map((n) => ({ ...n, form: `token ${n.form}` })),
      ...canaryNeedles('', keyLine)
        .filter((n) => !n.form.includes('user:password'))
        .map((n) => ({ ...n, form: `private key ${n.form}` })),
    ];
    sampler = sampleArgv(needles);
  });

  after(async () => {
    await sampler?.stop();
    await github?.close();
    await env?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('the secrecy needles find a minted token and the key (positive control)', () => {
    const token = github.issueToken(installation);
    assert.ok(
      findCanary(`Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`, needles)
        .length > 0,
    );
    assert.ok(findCanary(JSON.stringify({ key: app.privateKeyPem }), needles).length > 0);
    assert.ok(findCanary(Buffer.from(app.privateKeyPem).toString('base64'), needles).length > 0);
    assert.deepEqual(findCanary(`ghs_${randomBytes(16).toString('hex')}`, needles), []);
  });

  it('warms a private repository on every replica from a GitHub App Secret and serves authenticated clients', async (t) => {
    const hosts = [env.upstream.host, github.host];
    await env.install({
      fleet: {
        allowedHosts: hosts,
        httpHosts: hosts,
        // A sidecar runs no command on a token that would not outlast its requests
        // (fetch timeout + 10 s); the stand-in's 90 s tokens are replaced 45–54 s before expiry.
        extraEnv: [{ name: 'GITMIRROR_FETCH_TIMEOUT', value: '20s' }],
      },
    });
    await applySecret(SECRET, { ...appData(), webhookSecret: WEBHOOK_SECRET });
    await applyGitMirror(env, 'app', github.gitUrl(`${REPO}.git`), {
      credentialsSecretRef: { name: SECRET },
      webhookSecretRef: { name: SECRET },
      fetchInterval: '1h',
    });
    await env.cluster.kubectl(
      ['wait', '--for=condition=Ready', 'gitmirror/app', '-n', NAMESPACE, '--timeout=240s'],
      { timeoutMs: WARM_TIMEOUT_MS + 10_000 },
    );
    await waitFor(
      '2 of 2 replicas warm',
      async () => {
        const replicas = (await getGitMirror(env, 'app')).status?.replicas;
        return replicas?.total === 2 && replicas.warm === 2;
      },
      { timeoutMs: WARM_TIMEOUT_MS },
    );
    const gm = await gitMirror('app');
    assert.equal(cond(gm, 'CredentialsReady')?.status, 'True', JSON.stringify(gm.status?.conditions));
    assert.equal(cond(gm, 'CredentialsReady')?.reason, 'TokenMinted');
    const expires = Date.parse(gm.status?.githubApp?.tokenExpiresTime ?? '');
    assert.ok(
      expires > Date.now() && expires <= Date.now() + TOKEN_LIFETIME_S * 1000,
      gm.status?.githubApp?.tokenExpiresTime,
    );
    const upstream = await git(['rev-parse', 'HEAD'], { cwd: join(root, `${REPO}.git`) });
    for (const pod of await fleetPods(env)) {
      assert.equal(
        await cloneThrough(gh, pod.metadata.name, REPO, undefined, clientToken()),
        upstream.trim(),
      );
      await assert.rejects(cloneThrough(gh, pod.metadata.name, REPO), /fail|401|Authentication/i);
    }
    const appMints = github.mints.filter((m) => m.source === 'api');
    t.diagnostic(`${appMints.length} App mints so far (2 operator replicas, 2 fleet pods)`);
    assert.ok(appMints.length >= 1);
  });

  it('an unsigned or mis-signed delivery changes nothing; a signed one makes every pod serve the push within 2 s', async (t) => {
    const operators = (await operatorPods(env)).map((p) => p.metadata.name);
    assert.equal(operators.length, 2);
    const pods = await podNames();
    assert.equal(pods.length, 2);
    // A sidecar runs one job per mirror at a time, so a fetch waits behind a snapshot or repack
    // of the same mirror: the 2 s are measured on a mirror whose first snapshot is out and
    // that runs none.
    await waitFor(
      'the first snapshot published, none running',
      async () => {
        if (!(await getGitMirror(env, 'app')).status?.latestSnapshot) return false;
        const mirrors = await Promise.all(pods.map((pod) => sidecarMirrors(env, pod)));
        return mirrors.every((list) => list.find((m) => m.id === mirrorId(REPO))?.snapshot.running === false);
      },
      { timeoutMs: WARM_TIMEOUT_MS },
    );
    const before = await heads(pods);
    const head = await pushUpstream(`pushed ${Date.now()}`);
    for (const signature of ['none', 'wrong'] as const) {
      const answer = await deliver({ operatorPod: operators[0]!, signature });
      assert.equal(answer.status, 401, `${signature}: ${answer.body}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.deepEqual(await heads(pods), before, 'an unsigned delivery made a replica fetch');
    assert.equal((await gitMirror('app')).status?.webhook, undefined, 'an unsigned delivery was recorded');

    const id = randomUUID();
    const start = performance.now();
    const answer = await deliver({ operatorPod: operators[1]!, id });
    assert.equal(answer.status, 202, answer.body);
    await waitFor(
      'every pod at the pushed commit',
      async () => (await heads(pods)).every((h) => h === head),
      {
        timeoutMs: 10_000,
        intervalMs: 50,
      },
    );
    const elapsed = performance.now() - start;
    t.diagnostic(`every fleet pod at the pushed commit ${Math.round(elapsed)} ms after the delivery`);
    assert.ok(elapsed <= 2000, `${Math.round(elapsed)} ms`);
    for (const pod of await fleetPods(env)) {
      assert.equal(await cloneThrough(gh, pod.metadata.name, REPO, undefined, clientToken()), head);
    }
    const webhook = await waitFor('status.webhook', async () => (await gitMirror('app')).status?.webhook);
    assert.equal(webhook.lastDeliveryID, id);
    assert.equal(webhook.lastEvent, 'push');
    // A redelivery, to the other replica (behind the Service it may land on any): a duplicate,
    // nothing done, once that replica's informer has seen status.webhook.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const again = await deliver({ operatorPod: operators[0]!, id });
    assert.equal(again.status, 200, again.body);
    assert.match(again.body, /duplicate|handled already/);
  });

  it('tokens rotate under continuous clones and pushes: no failed clone, no request on an expired token, one mint per rotation', async (t) => {
    const operators = (await operatorPods(env)).map((p) => p.metadata.name);
    const pods = await podNames();
    const startedAt = Date.now();
    const mintsBefore = github.mints.filter((m) => m.source === 'api').length;
    const gitBefore = github.gitRequests.length;
    const failures: string[] = [];
    let clones = 0;
    let pushes = 0;
    const deadline = startedAt + ROTATION_RUN_MS;
    const client = async (offset: number) => {
      for (let i = offset; Date.now() < deadline; i++) {
        const pod = pods[i % pods.length]!;
        try {
          await cloneThrough(gh, pod, REPO, undefined, clientToken());
          clones++;
        } catch (err) {
          failures.push(`${pod}: ${(err as Error).message.slice(0, 300)}`);
        }
      }
    };
    const pusher = async () => {
      while (Date.now() < deadline - 15_000) {
        const head = await pushUpstream(`rotation ${pushes}`);
        const answer = await deliver({ operatorPod: operators[pushes % 2]!, id: randomUUID() });
        if (answer.status !== 202) failures.push(`delivery: ${answer.status} ${answer.body}`);
        await waitFor(
          `every pod at push ${pushes}`,
          async () => (await heads(pods)).every((h) => h === head),
          {
            timeoutMs: 10_000,
            intervalMs: 100,
          },
        ).catch((err: Error) => failures.push(err.message));
        pushes++;
        await new Promise((resolve) => setTimeout(resolve, 10_000));
      }
    };
    await Promise.all([client(0), client(1), pusher()]);
    const elapsedS = (Date.now() - startedAt) / 1000;
    const appMints = github.mints.filter((m) => m.source === 'api').slice(mintsBefore);
    const requests = github.gitRequests.slice(gitBefore);
    const appTokens = new Set(appMints.map((m) => m.tokenId));
    const fetchTokens = new Set(
      requests.filter((r) => r.tokenId && appTokens.has(r.tokenId)).map((r) => r.tokenId),
    );
    const minRemaining = Math.min(
      ...requests.filter((r) => r.tokenId && appTokens.has(r.tokenId)).map((r) => r.remainingMs ?? Infinity),
    );
    t.diagnostic(
      `${Math.round(elapsedS)} s: ${clones} clones, ${pushes} pushes, ${appMints.length} App mints, ` +
        `${fetchTokens.size} App tokens used upstream (least left on one: ${Math.round(minRemaining / 1000)} s), ` +
        `${requests.length} upstream git requests`,
    );
    assert.deepEqual(failures, []);
    assert.ok(clones >= 20, `only ${clones} clones`);
    assert.ok(pushes >= 8, `only ${pushes} pushes`);
    assert.deepEqual(github.expiredTokenUses(), [], 'a request carried an expired token');
    assert.deepEqual(
      requests
        .filter((r) => r.auth !== 'valid' && r.auth !== 'none')
        .map((r) => `${r.method} ${r.path}: ${r.auth}`),
      [],
    );
    // Refreshed 45–54 s before a 90 s token expires: one mint per 36–45 s for the one
    // installation, however many operator replicas, fleet pods and pushes.
    assert.ok(appMints.length >= Math.floor(elapsedS / 45) - 1, `${appMints.length} mints in ${elapsedS} s`);
    assert.ok(appMints.length <= Math.ceil(elapsedS / 36) + 1, `${appMints.length} mints in ${elapsedS} s`);
    assert.ok(fetchTokens.size >= 3, `fetches used ${fetchTokens.size} App tokens: the fleet did not rotate`);
    assert.ok(minRemaining >= 20_000, `a fetch ran on a token with ${minRemaining} ms left`);
  });

  it('a bad key, a wrong installation id and a revoked installation each give a clear condition', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const otherKey = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    const revokedInstallation = github.install(app.appId);
    const cases = [
      {
        name: 'bad-key',
        data: appData({ githubAppPrivateKey: otherKey }),
        reason: 'GitHubAppUnauthorized',
        message: /JSON web token could not be decoded/,
      },
      {
        name: 'wrong-installation',
        data: appData({ githubAppInstallationID: '1' }),
        reason: 'GitHubInstallationNotFound',
        message: /Not Found/,
      },
    ];
    appSecrets.push('wrong-installation', 'revoked');
    for (const c of cases) {
      await applySecret(c.name, c.data);
      await applyGitMirror(env, c.name, github.gitUrl(`org/${c.name}.git`), {
        credentialsSecretRef: { name: c.name },
      });
    }
    await applySecret('revoked', appData({ githubAppInstallationID: revokedInstallation }));
    await applyGitMirror(env, 'revoked', github.gitUrl('org/revoked.git'), {
      credentialsSecretRef: { name: 'revoked' },
    });
    await env.cluster.kubectl(
      ['wait', '--for=condition=Ready', 'gitmirror/revoked', '-n', NAMESPACE, '--timeout=240s'],
      { timeoutMs: WARM_TIMEOUT_MS + 10_000 },
    );
    github.uninstall(revokedInstallation);
    cases.push({
      name: 'revoked',
      data: appData(),
      reason: 'GitHubInstallationNotFound',
      message: /Not Found/,
    });
    for (const c of cases) {
      const credentials = await waitFor(
        `${c.name}: CredentialsReady False ${c.reason}`,
        async () => {
          const condition = cond(await gitMirror(c.name), 'CredentialsReady');
          return condition?.status === 'False' && condition.reason === c.reason && condition;
        },
        { timeoutMs: 180_000 },
      );
      assert.match(credentials.message ?? '', c.message);
    }
    for (const name of ['bad-key', 'wrong-installation']) {
      const gm = await gitMirror(name);
      assert.equal(cond(gm, 'Stalled')?.status, 'True', JSON.stringify(gm.status?.conditions));
      assert.equal(cond(gm, 'Ready')?.status, 'False');
    }
  });

  it('the key and every token are in no argv, pod file, API object or /metrics; the key only in its Secrets', async (t) => {
    argv = await sampler?.stop();
    sampler = undefined;
    assert.ok(argv && argv.samples >= 100, `only ${argv?.samples} argv samples`);
    assert.ok(
      [...argv.commandLines].some((l) => /^git .*(fetch|upload-pack|ls-remote)/.test(l)),
      'the sampler saw no git command of a sidecar',
    );
    assertNoHits(argv.hits, 'argv');
    const hits: Hit[] = [];
    const kubelet = env.cluster.kubelet;
    if (kubelet) {
      const workers = kubelet.pods().filter((w) => w.name.startsWith(`${NAMESPACE}/`));
      assert.ok(workers.some((w) => w.name.includes('operator')));
      for (const worker of workers) hits.push(...(await scanTree(worker.dir, needles)).hits);
      t.diagnostic(`${workers.length} pods' files scanned`);
    }
    const kinds = 'pods,gitmirrors,configmaps,leases,services,endpointslices,deployments,replicasets';
    for (const args of [
      ['get', 'events', '-A', '-o', 'json'],
      ['get', 'events.events.k8s.io', '-A', '-o', 'json'],
      ['get', kinds, '-n', NAMESPACE, '-o', 'json'],
    ]) {
      const { stdout } = await env.cluster.kubectl(args);
      const found = findCanary(stdout, needles);
      if (found.length > 0) hits.push({ where: `kubectl ${args.join(' ')}`, forms: found });
    }
    for (const { pod, port } of [
      ...(await operatorPods(env)).map((p) => ({ pod: p.metadata.name, port: 8081 })),
      ...(await fleetPods(env)).map((p) => ({ pod: p.metadata.name, port: 9090 })),
    ]) {
      const text = await (await fetch(`${await env.cluster.podUrl(NAMESPACE, pod, port)}/metrics`)).text();
      const found = findCanary(text, needles);
      if (found.length > 0) hits.push({ where: `${pod}:${port}/metrics`, forms: found });
    }
    assertNoHits(hits, 'pod files, API objects or metrics');
    const secrets = await kubectlJson<{ items: { metadata: { name: string } }[] }>(env, [
      'get',
      'secrets',
      '-n',
      NAMESPACE,
    ]);
    assert.deepEqual(
      secrets.items
        .filter((s) => findCanary(JSON.stringify(s), needles).length > 0)
        .map((s) => s.metadata.name)
        .sort(),
      [...appSecrets].sort(),
    );
  });

  function assertNoHits(hits: Hit[], where: string): void {
    assert.deepEqual(
      hits.map((h) => redact(`${h.where}: ${h.forms.join(', ')}`, needles)),
      [],
      `a GitHub App secret leaked into ${where}`,
    );
  }
});
