import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { WARM_CONDITION } from '../src/api/gitmirror.ts';
import { isOperatorError } from '../src/errors/operator-error.ts';
import { warmCondition } from '../src/fleet/members.ts';
import { harness, POLL_MS, REPO_ID, REPO_URL, TOKEN_SECRET } from './fakes/harness.ts';

type H = ReturnType<typeof harness>;
const OTHER_URL = 'https://gitlab.com/team/tool.git';
const OTHER_ID = 'gitlab.com/team/tool';

/** A fleet pod that started at 00:00:00; the clock stands at 00:01:00. */
function setup(): H {
  const h = harness();
  h.cluster.secrets.set(`ns/${TOKEN_SECRET}`, { token: 'tok' });
  h.sidecars.tokens.set('ns', 'tok');
  h.cluster.addPod('p1', { startedAt: '2026-01-01T00:00:00Z' });
  return h;
}

function gate(h: H, pod = 'p1') {
  const p = h.cluster.pods.get('ns', pod);
  return p && warmCondition(p);
}

describe('pod warm-up', () => {
  test('a pod whose fleet carries no mirror is warm at once', async () => {
    const h = setup();
    assert.deepEqual(await h.pod('p1'), {});
    assert.equal(gate(h)?.status, 'True');
    assert.equal(gate(h)?.reason, 'NoMirrors');
    assert.equal(h.sidecars.calls.length, 0);
  });

  test('the pods/status patch carries only the warm condition and the pod uid', async () => {
    const h = setup();
    await h.pod('p1');
    const [patch] = h.cluster.podPatches;
    assert.equal(patch?.uid, h.cluster.pods.get('ns', 'p1')?.metadata.uid);
    assert.equal(patch?.condition.type, WARM_CONDITION);
    assert.deepEqual(Object.keys(patch?.condition ?? {}).sort(), [
      'lastProbeTime',
      'lastTransitionTime',
      'message',
      'reason',
      'status',
      'type',
    ]);
    const ready = h.cluster.pods.get('ns', 'p1')?.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'False', 'the kubelet-owned conditions are left alone');
  });

  test('hands the pod its mirrors, restores, requeues while waiting, then opens the gate', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    h.cluster.addGitMirror('tool', { url: OTHER_URL });
    const first = await h.pod('p1');
    const calls = h.sidecars.calls.map((c) => `${c.method} ${c.id ?? ''}`.trim());
    assert.equal(calls[0], 'list');
    assert.deepEqual(
      calls.slice(1).sort(),
      [`put ${REPO_ID}`, `put ${OTHER_ID}`, `restore ${REPO_ID}`, `restore ${OTHER_ID}`].sort(),
    );
    assert.ok(calls.indexOf(`put ${REPO_ID}`) < calls.indexOf(`restore ${REPO_ID}`));
    assert.equal(first.requeueAfterMs, POLL_MS);
    assert.equal(gate(h)?.status, 'False');
    assert.equal(gate(h)?.reason, 'WarmingUp');
    assert.match(
      gate(h)?.message ?? '',
      /0\/2 mirrors ready; waiting for github.com\/org\/repo \(downloading\)/,
    );
    h.sidecars.of('ns/p1').finish(REPO_ID);
    await h.pod('p1');
    assert.equal(gate(h)?.status, 'False');
    assert.match(gate(h)?.message ?? '', /1\/2 mirrors ready/);
    h.sidecars.of('ns/p1').finish(OTHER_ID);
    assert.deepEqual(await h.pod('p1'), {});
    assert.equal(gate(h)?.status, 'True');
    assert.equal(gate(h)?.reason, 'Warm');
    assert.equal(h.sidecars.calls.filter((c) => c.method === 'restore').length, 2, 'no second restore');
    assert.equal(h.cluster.events.at(-1)?.reason, 'Warm');
    assert.equal(h.cluster.events.at(-1)?.regarding.kind, 'Pod');
  });

  test('the warm-up PUT never makes a pod the writer', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.pod('p1');
    assert.equal(h.sidecars.calls.find((c) => c.method === 'put')?.spec?.snapshot?.writer, false);
  });

  test('a mirror the sidecar already holds is not PUT again by the warm-up', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.gm('repo');
    const puts = h.sidecars.calls.filter((c) => c.method === 'put').length;
    await h.pod('p1');
    assert.equal(h.sidecars.calls.filter((c) => c.method === 'put').length, puts);
  });

  test('records the warm-up duration from pod start', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    h.sidecars.of('ns/p1').readyAfterReads = 1;
    await h.pod('p1');
    await h.pod('p1');
    const metric = await h.metrics.warmupSeconds.get();
    const sum = metric.values.find((v) => v.metricName === 'gitmirror_operator_pod_warmup_seconds_sum');
    assert.equal(sum?.value, 60);
  });

  test('with onTimeout Open the gate opens at the timeout with reason WarmupTimeout', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL, warmup: { timeout: '2m', onTimeout: 'Open' } });
    const first = await h.pod('p1');
    assert.ok((first.requeueAfterMs ?? 0) <= POLL_MS);
    h.clock.advance(59_000);
    const near = await h.pod('p1');
    assert.equal(near.requeueAfterMs, 1_000, 'the next look is at the deadline, not after it');
    h.clock.advance(1_000);
    assert.deepEqual(await h.pod('p1'), {});
    assert.equal(gate(h)?.status, 'True');
    assert.equal(gate(h)?.reason, 'WarmupTimeout');
    assert.equal(h.cluster.events.at(-1)?.type, 'Warning');
  });

  test('with onTimeout Closed the gate stays False, and opens once the mirror is ready', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL, warmup: { timeout: '1m', onTimeout: 'Closed' } });
    const result = await h.pod('p1');
    assert.equal(gate(h)?.status, 'False');
    assert.equal(gate(h)?.reason, 'WarmupTimeout');
    assert.equal(result.requeueAfterMs, POLL_MS);
    h.sidecars.of('ns/p1').finish(REPO_ID);
    await h.pod('p1');
    assert.equal(gate(h)?.reason, 'Warm');
  });

  test('the gate opens on timeout only if every pending mirror says Open', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL, warmup: { timeout: '30s', onTimeout: 'Open' } });
    h.cluster.addGitMirror('tool', { url: OTHER_URL, warmup: { timeout: '30s', onTimeout: 'Closed' } });
    await h.pod('p1');
    assert.equal(gate(h)?.status, 'False');
    h.sidecars.of('ns/p1').finish(OTHER_ID);
    await h.pod('p1');
    assert.equal(gate(h)?.status, 'True');
    assert.equal(gate(h)?.reason, 'WarmupTimeout');
  });

  test('a Ready pod is never taken out of service by a mirror added later', async () => {
    const h = setup();
    await h.pod('p1');
    h.cluster.markReadyIfGatesTrue('ns', 'p1');
    const patches = h.cluster.podPatches.length;
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    assert.deepEqual(await h.pod('p1'), {});
    assert.equal(h.cluster.podPatches.length, patches);
    assert.equal(gate(h)?.status, 'True');
    await h.gm('repo');
    assert.ok(
      h.sidecars.of('ns/p1').mirrors.has(REPO_ID),
      'the GitMirror controller warms it in the background',
    );
  });

  test('a pod that is Ready without the gate is warmed but never marked False', async () => {
    const h = setup();
    h.cluster.updatePod('ns', 'p1', (p) => ({
      ...p,
      spec: { ...p.spec, readinessGates: [] },
      status: { ...p.status, conditions: [{ type: 'Ready', status: 'True' }] },
    }));
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.pod('p1');
    assert.equal(h.cluster.podPatches.length, 0);
    assert.ok(h.sidecars.of('ns/p1').mirrors.has(REPO_ID));
  });

  test('pods that are not running members are left alone, but get their token Secret', async () => {
    const h = harness();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    h.cluster.addPod('pending', { phase: 'Pending' });
    h.cluster.addPod('no-ip', { ip: '' });
    h.cluster.addPod('leaving');
    h.cluster.updatePod('ns', 'leaving', (p) => ({
      ...p,
      metadata: { ...p.metadata, deletionTimestamp: '2026-01-01T00:00:30Z' },
    }));
    for (const name of ['pending', 'no-ip', 'leaving']) assert.deepEqual(await h.pod(name), {});
    assert.equal(h.sidecars.calls.length, 0);
    assert.equal(h.cluster.podPatches.length, 0);
    assert.ok(h.cluster.secrets.get(`ns/${TOKEN_SECRET}`)?.token);
  });

  test('a sidecar that does not answer keeps the gate False until the timeout applies', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL, warmup: { timeout: '2m', onTimeout: 'Open' } });
    h.sidecars.of('ns/p1').down = true;
    const result = await h.pod('p1');
    assert.equal(gate(h)?.reason, 'SidecarUnavailable');
    assert.equal(result.requeueAfterMs, POLL_MS);
    h.clock.advance(60_000);
    await h.pod('p1');
    assert.equal(gate(h)?.status, 'True');
    assert.equal(gate(h)?.reason, 'WarmupTimeout');
  });

  test('a rejected token is read again from the Secret on the next pass', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.pod('p1');
    h.cluster.secrets.set(`ns/${TOKEN_SECRET}`, { token: 'rotated' });
    h.sidecars.tokens.set('ns', 'rotated');
    await h.pod('p1');
    assert.equal(gate(h)?.reason, 'SidecarUnavailable');
    h.sidecars.of('ns/p1').finish(REPO_ID);
    await h.pod('p1');
    assert.equal(gate(h)?.reason, 'Warm');
  });

  test('a failed restore is started again after the retry interval', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.pod('p1');
    h.sidecars.of('ns/p1').fail(REPO_ID, 'store unreachable', '2026-01-01T00:01:00Z');
    await h.pod('p1');
    assert.match(gate(h)?.message ?? '', /store unreachable/);
    const restores = () => h.sidecars.calls.filter((c) => c.method === 'restore').length;
    assert.equal(restores(), 1);
    h.clock.advance(60_000);
    await h.pod('p1');
    assert.equal(restores(), 2);
  });

  test('a new leader finishes a warm-up the old one started, without restarting it', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.pod('p1');
    h.failover();
    h.clock.advance(10_000);
    await h.pod('p1');
    assert.equal(h.sidecars.calls.filter((c) => c.method === 'restore').length, 1);
    h.sidecars.of('ns/p1').finish(REPO_ID);
    await h.pod('p1');
    assert.equal(gate(h)?.reason, 'Warm');
  });

  test('a new leader counts the timeout from the pod start, not from its own start', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL, warmup: { timeout: '5m', onTimeout: 'Open' } });
    await h.pod('p1');
    h.clock.advance(4 * 60_000);
    h.failover();
    await h.pod('p1');
    assert.equal(gate(h)?.reason, 'WarmupTimeout');
  });

  test('a GitMirror that cannot be handed out (missing credentials) holds no pod back', async () => {
    const h = setup();
    h.cluster.addGitMirror('private', { url: OTHER_URL, credentialsSecretRef: { name: 'missing' } });
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    h.sidecars.of('ns/p1').readyAfterReads = 1;
    await h.pod('p1');
    await h.pod('p1');
    assert.equal(gate(h)?.reason, 'Warm');
  });

  test('a GitMirror deleted during the warm-up is no longer waited for', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.gm('repo');
    await h.pod('p1');
    h.cluster.deleteGitMirror('ns', 'repo');
    await h.pod('p1');
    assert.equal(gate(h)?.reason, 'NoMirrors');
  });

  test('a patch refused because the pod was re-created is an error to retry', async () => {
    const h = setup();
    h.cluster.failNext('patchPodCondition', 'KUBE_CONFLICT');
    await assert.rejects(h.pod('p1'), (err) => isOperatorError(err, 'KUBE_CONFLICT'));
    await h.pod('p1');
    assert.equal(gate(h)?.status, 'True');
  });

  test('an unchanged decision is not patched again', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.pod('p1');
    await h.pod('p1');
    await h.pod('p1');
    assert.equal(h.cluster.podPatches.length, 1);
  });

  test('the gate goes False to True once, and lastTransitionTime moves only then', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    await h.pod('p1');
    const falseSince = gate(h)?.lastTransitionTime;
    h.clock.advance(30_000);
    h.sidecars.of('ns/p1').finish(REPO_ID);
    await h.pod('p1');
    assert.notEqual(gate(h)?.lastTransitionTime, falseSince);
    assert.deepEqual(
      h.cluster.podPatches.map((p) => p.condition.status),
      ['False', 'True'],
    );
  });
});

describe('warm-up and GitMirror controllers together', () => {
  test('a rolling replacement warms the new pod and hands the writer role over', async () => {
    const h = setup();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    h.sidecars.of('ns/p1').readyAfterReads = 1;
    await h.settle();
    assert.equal(gate(h)?.reason, 'Warm');
    assert.equal(h.cluster.gitMirrors.get('ns', 'repo')?.status?.writer, 'p1');
    h.cluster.addPod('p2', { createdAt: '2026-01-01T00:02:00Z', startedAt: '2026-01-01T00:02:00Z' });
    h.sidecars.of('ns/p2').readyAfterReads = 2;
    await h.settle();
    assert.equal(gate(h, 'p2')?.reason, 'Warm');
    h.cluster.pods.delete('ns', 'p1');
    await h.settle();
    assert.equal(h.cluster.gitMirrors.get('ns', 'repo')?.status?.writer, 'p2');
    assert.deepEqual(h.cluster.gitMirrors.get('ns', 'repo')?.status?.replicas, { total: 1, warm: 1 });
  });
});
