import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { git } from '../../testing/git.ts';
import { addCommit } from '../../testing/git-repos.ts';
import { BUCKET, type Environment, NAMESPACE, startEnvironment } from './support/environment.ts';
import {
  adminToken,
  applyGitMirror,
  cloneThrough,
  condition,
  fleetPods,
  getGitMirror,
  isReady,
  kubectlJson,
  operatorPods,
  sidecarMirrors,
  upstreamHead,
  WARM_GATE,
} from './support/gitmirror.ts';
import { waitFor } from './support/poll.ts';
import {
  type ArgvReport,
  canaryNeedles,
  findCanary,
  type Hit,
  redact,
  sampleArgv,
  scanTree,
} from './support/secrecy.ts';

/**
 * A canary secret through a whole operator run: a private upstream that accepts only it, a
 * GitMirror that names it through its credentials Secret, warm-up, clones through the cache
 * (clients authenticate with the same secret, which Private access checks against upstream),
 * a snapshot published to S3 and restored by a new pod. Meanwhile every process's argv is
 * sampled; afterwards the canary — raw, URL-encoded, base64 of it and of `user:password` — is
 * looked for in every log and file of every pod (operator and sidecars), the snapshot archives
 * (compressed, as tar, and as git objects), every /metrics, every Event and object of the
 * namespace, and the sidecars' admin status. It may be in the Secret, and nowhere else: in
 * operator mode the sidecar keeps credentials in memory only (core/admin-api.ts), so
 * unlike GITMIRROR_CREDENTIALS_FILE (standalone) there is no file the design allows it in.
 */

const exec = promisify(execFile);
const REPO = 'private-repo';
const SECRET = 'upstream-canary';
const USER = 'ci-bot';
/** Characters that URL-encoding changes, so the URL-encoded form is a form of its own. */
const CANARY = `gm-canary-${randomBytes(8).toString('hex')}/+=@${randomBytes(2).toString('hex')}`;
const NEEDLES = canaryNeedles(USER, CANARY);
const CREDENTIALS = { user: USER, password: CANARY };
const WARM_TIMEOUT_MS = 240_000;

describe('a canary secret across a full operator run', { timeout: 1_500_000 }, () => {
  let env: Environment;
  let sampler: { stop(): Promise<ArgvReport> };
  let argv: ArgvReport | undefined;
  let controlArgv: ArgvReport | undefined;
  let restoredPod = '';

  before(async () => {
    env = await startEnvironment([REPO], { privateRepo: { name: REPO, ...CREDENTIALS } });
    // Positive control for the sampler: a process with the URL-encoded canary in its argv.
    const control = sampleArgv(NEEDLES, 10);
    await exec(process.execPath, ['-e', 'setTimeout(() => {}, 300)', encodeURIComponent(CANARY)]);
    controlArgv = await control.stop();
    sampler = sampleArgv(NEEDLES);
  });

  after(async () => {
    await sampler?.stop();
    await env?.stop();
  });

  it('finds the canary where it is (positive controls of every scanner)', async () => {
    assert.ok(
      controlArgv?.hits.some((h) => h.forms.includes('url-encoded')),
      'the argv sampler missed the canary',
    );
    const dir = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-canary-control-'));
    try {
      await mkdir(join(dir, 'a', 'b'), { recursive: true });
      const header = `authorization: Basic ${Buffer.from(`${USER}:${CANARY}`).toString('base64')}`;
      await writeFile(join(dir, 'a', 'b', 'log'), Buffer.concat([randomBytes(333), Buffer.from(header)]));
      await writeFile(join(dir, 'a', 'clean'), 'nothing to see');
      const { files, hits } = await scanTree(dir, NEEDLES);
      assert.equal(files, 2);
      assert.deepEqual(
        hits.map((h) => h.where),
        [join(dir, 'a', 'b', 'log')],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    for (const [form, text] of [
      ['raw', `x${CANARY}x`],
      ['url-encoded', `https://${USER}:${encodeURIComponent(CANARY)}@host/repo`],
      ['base64(password) at offset 1', Buffer.from(`{${CANARY}}`).toString('base64')],
    ] as const) {
      assert.ok(findCanary(text, NEEDLES).includes(form), `${form} not found`);
    }
    assert.deepEqual(findCanary(`gm-canary-${randomBytes(8).toString('hex')}`, NEEDLES), []);
  });

  it('warms a private mirror from its Secret, serves only authenticated clients, publishes to S3 and restores on a new pod', async (t) => {
    await env.install();
    await env.cluster.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: SECRET },
        stringData: { username: USER, password: CANARY },
      }),
    });
    // The Secret itself holds the canary, base64-encoded: the API scan below finds it there.
    const secret = await env.cluster.kubectl(['get', 'secret', SECRET, '-n', NAMESPACE, '-o', 'json']);
    assert.ok(findCanary(secret.stdout, NEEDLES).includes('base64(password) at offset 0'));

    await applyGitMirror(env, REPO, env.upstreamUrl(REPO), {
      fetchInterval: '1m',
      credentialsSecretRef: { name: SECRET },
    });
    await env.cluster.kubectl(
      ['wait', '--for=condition=Ready', `gitmirror/${REPO}`, '-n', NAMESPACE, '--timeout=240s'],
      { timeoutMs: WARM_TIMEOUT_MS + 10_000 },
    );
    await waitFor(
      '2 of 2 replicas warm',
      async () => {
        const replicas = (await getGitMirror(env, REPO)).status?.replicas;
        return replicas?.total === 2 && replicas.warm === 2;
      },
      { timeoutMs: WARM_TIMEOUT_MS },
    );
    const pods = await fleetPods(env);
    for (const pod of pods) {
      const name = pod.metadata.name;
      const mirror = (await sidecarMirrors(env, name)).find((m) => m.id === env.mirrorId(REPO));
      assert.equal(mirror?.access, 'Private', 'a mirror with credentials defaults to Private');
      assert.ok(mirror?.ready, `${REPO} not ready on ${name}`);
      assert.equal(
        await cloneThrough(env, name, REPO, undefined, CREDENTIALS),
        await upstreamHead(env, REPO),
      );
      await assert.rejects(cloneThrough(env, name, REPO), /fail|401|Authentication/i, 'an anonymous clone');
    }
    // A new upstream commit: the mirrors' freshness checks and fetches authenticate again.
    const { work } = env.repos.get(REPO)!;
    const head = await addCommit(work, 'new.txt', 'after warm-up\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    for (const pod of pods) {
      await waitFor(`${pod.metadata.name} serving the new commit`, async () => {
        return (await cloneThrough(env, pod.metadata.name, REPO, undefined, CREDENTIALS)) === head;
      });
    }

    const snapshot = await waitFor(
      'status.latestSnapshot',
      async () => (await getGitMirror(env, REPO)).status?.latestSnapshot,
      { timeoutMs: WARM_TIMEOUT_MS },
    );
    const before = new Set(pods.map((p) => p.metadata.name));
    await env.upgrade({ fleet: { replicas: 3 } });
    const added = await waitFor(
      'a third pod, Ready',
      async () => (await fleetPods(env)).find((p) => !before.has(p.metadata.name) && isReady(p)),
      { timeoutMs: WARM_TIMEOUT_MS },
    );
    restoredPod = added.metadata.name;
    assert.equal(condition(added, WARM_GATE)?.reason, 'Warm');
    const restored = (await sidecarMirrors(env, restoredPod)).find((m) => m.id === env.mirrorId(REPO));
    assert.equal(restored?.restore.source, 'snapshot', JSON.stringify(restored?.restore));
    assert.equal(restored?.restore.key, snapshot.key);
    assert.equal(await cloneThrough(env, restoredPod, REPO, undefined, CREDENTIALS), head);

    const fetched = env.upstream.requests.filter(
      (r) => r.path.startsWith(`/${REPO}.git/`) && r.authorized && !r.viaCache && r.command === 'fetch',
    );
    assert.ok(fetched.length > 0, 'no authenticated fetch by a mirror reached upstream');
    argv = await sampler.stop();
    t.diagnostic(
      `snapshot ${snapshot.key}; ${argv.samples} argv samples, ${argv.commandLines.size} distinct command lines; ` +
        `${fetched.length} authenticated fetches by mirrors`,
    );
  });

  it('is in no process argv sampled during the run', () => {
    assert.ok(argv, 'the run did not finish');
    const lines = [...argv.commandLines];
    assert.ok(argv.samples >= 100, `only ${argv.samples} samples`);
    // The sampler saw the product at work: sidecars, the operator, and git run by a sidecar.
    for (const what of [
      /sidecar\/src\/main\.ts/,
      /operator\/src\/main\.ts/,
      /^git .*(fetch|upload-pack|ls-remote)/,
    ]) {
      assert.ok(
        lines.some((l) => what.test(l)),
        `no command line matched ${what}`,
      );
    }
    assertNoHits(argv.hits, 'argv');
  });

  it('is in no log or file of any pod: containers’ logs, data and scratch volumes (there is no credentials file in operator mode)', async (t) => {
    const kubelet = env.cluster.kubelet;
    if (!kubelet) return t.skip('needs the suite’s own kubelet to read pods’ files');
    const workers = kubelet.pods().filter((w) => w.name.startsWith(`${NAMESPACE}/`));
    const names = workers.map((w) => w.name.split('/')[1]!);
    assert.ok(names.includes(restoredPod), `${restoredPod} is not on the node`);
    assert.ok(names.some((n) => n.includes('operator')));
    const hits: Hit[] = [];
    let files = 0;
    for (const worker of workers) {
      const scan = await scanTree(worker.dir, NEEDLES);
      files += scan.files;
      hits.push(...scan.hits);
      const logs = await scanTree(join(worker.dir, 'logs'), []);
      assert.ok(logs.files > 0, `${worker.name} wrote no log`);
    }
    t.diagnostic(`${files} files under ${workers.length} pods' dirs`);
    const sidecarLog = workers.find((w) => w.name.endsWith(restoredPod))!;
    assert.ok(
      (await scanTree(join(sidecarLog.dir, 'volumes', 'data'), [])).files > 10,
      'the data volume of the restored pod is empty: wrong dir?',
    );
    assertNoHits(hits, 'pod files');
  });

  it('is in no snapshot archive in S3: not compressed, not in the tar, not in any git object', async (t) => {
    const listed = await env.s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    const keys = (listed.Contents ?? []).map((o) => o.Key!);
    const archives = keys.filter((k) => k.endsWith('.tar.zst'));
    assert.ok(archives.length > 0, `no archive in S3: ${keys.join(', ')}`);
    const hits: Hit[] = [];
    const dir = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-canary-s3-'));
    try {
      for (const [i, key] of keys.entries()) {
        const object = await env.s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        const bytes = Buffer.from(await object.Body!.transformToByteArray());
        const found = findCanary(bytes, NEEDLES);
        if (found.length > 0) hits.push({ where: `s3://${BUCKET}/${key}`, forms: found });
        if (!key.endsWith('.tar.zst')) continue;
        const archive = join(dir, `${i}.tar.zst`);
        await writeFile(archive, bytes);
        const { stdout: tar } = await exec('zstd', ['-dc', archive], {
          encoding: 'buffer',
          maxBuffer: 1 << 30,
        });
        const inTar = findCanary(tar, NEEDLES);
        if (inTar.length > 0) hits.push({ where: `${key} (tar)`, forms: inTar });
        const mirror = join(dir, `${i}.git`);
        await mkdir(mirror);
        await writeFile(join(dir, `${i}.tar`), tar);
        await exec('tar', ['-x', '-C', mirror, '-f', join(dir, `${i}.tar`)]);
        const objects = await git(['cat-file', '--batch-all-objects', '--batch'], {
          cwd: mirror,
          timeoutMs: 120_000,
        });
        assert.ok(objects.includes('after warm-up') || objects.length > 1000, `${key}: no objects`);
        const inObjects = findCanary(objects, NEEDLES);
        if (inObjects.length > 0) hits.push({ where: `${key} (git objects)`, forms: inObjects });
        const config = await git(['config', '--list', '--local'], { cwd: mirror });
        const inConfig = findCanary(config, NEEDLES);
        if (inConfig.length > 0) hits.push({ where: `${key} (config)`, forms: inConfig });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    t.diagnostic(`${keys.length} objects, ${archives.length} archives`);
    assertNoHits(hits, 'S3');
  });

  it('is in no /metrics of the operators or the sidecars', async () => {
    const hits: Hit[] = [];
    const targets = [
      ...(await operatorPods(env)).map((p) => ({ pod: p.metadata.name, port: 8081 })),
      ...(await fleetPods(env)).map((p) => ({ pod: p.metadata.name, port: 9090 })),
    ];
    assert.equal(targets.length, 5);
    for (const { pod, port } of targets) {
      const text = await (await fetch(`${await env.cluster.podUrl(NAMESPACE, pod, port)}/metrics`)).text();
      assert.match(text, /gitmirror_/, `${pod}: no metrics`);
      const found = findCanary(text, NEEDLES);
      if (found.length > 0) hits.push({ where: `${pod}:${port}/metrics`, forms: found });
    }
    assertNoHits(hits, 'metrics');
  });

  it('is in no Event, GitMirror status, Pod or other object, only in its Secret', async () => {
    const hits: Hit[] = [];
    const kinds = 'pods,gitmirrors,configmaps,leases,services,endpointslices,deployments,replicasets';
    for (const args of [
      ['get', 'events', '-A', '-o', 'json'],
      ['get', 'events.events.k8s.io', '-A', '-o', 'json'],
      ['get', kinds, '-n', NAMESPACE, '-o', 'json'],
    ]) {
      const { stdout } = await env.cluster.kubectl(args);
      assert.ok(stdout.length > 100, `kubectl ${args.join(' ')}: nothing`);
      const found = findCanary(stdout, NEEDLES);
      if (found.length > 0) hits.push({ where: `kubectl ${args.join(' ')}`, forms: found });
    }
    const events = await kubectlJson<{ items: { reason: string }[] }>(env, [
      'get',
      'events',
      '-n',
      NAMESPACE,
    ]);
    assert.ok(
      events.items.some((e) => e.reason === 'Warm'),
      'the operator recorded no Warm Event',
    );
    const gm = await getGitMirror(env, REPO);
    assert.ok(gm.status?.latestSnapshot, 'the GitMirror status has no snapshot');
    const secrets = await kubectlJson<{ items: { metadata: { name: string } }[] }>(env, [
      'get',
      'secrets',
      '-n',
      NAMESPACE,
    ]);
    const holding = secrets.items.filter((s) => findCanary(JSON.stringify(s), NEEDLES).length > 0);
    assert.deepEqual(
      holding.map((s) => s.metadata.name),
      [SECRET],
    );
    assertNoHits(hits, 'API objects');
  });

  it('is in no admin status of any sidecar', async () => {
    const hits: Hit[] = [];
    const token = await adminToken(env);
    for (const pod of await fleetPods(env)) {
      const base = `${await env.cluster.podUrl(NAMESPACE, pod.metadata.name, 9090)}/v1/mirrors`;
      for (const url of [base, `${base}/${env.mirrorId(REPO)}`]) {
        const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.status, 200, url);
        const text = await res.text();
        assert.ok(text.includes(env.mirrorId(REPO)), `${url}: ${text.slice(0, 200)}`);
        const found = findCanary(text, NEEDLES);
        if (found.length > 0) hits.push({ where: url, forms: found });
      }
    }
    assertNoHits(hits, 'admin status');
  });
});

function assertNoHits(hits: Hit[], where: string): void {
  assert.deepEqual(
    hits.map((h) => redact(`${h.where}: ${h.forms.join(', ')}`, NEEDLES)),
    [],
    `the canary secret leaked into ${where}`,
  );
}
