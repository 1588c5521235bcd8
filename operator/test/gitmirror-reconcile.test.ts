import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FINALIZER, type GitMirror } from '../src/api/gitmirror.ts';
import { errorKind, isOperatorError } from '../src/errors/operator-error.ts';
import { findCondition } from '../src/gitmirror/conditions.ts';
import { harness, REPO_ID, REPO_URL, SETTINGS, TOKEN_SECRET } from './fakes/harness.ts';

type H = ReturnType<typeof harness>;

function status(h: H, name = 'repo'): NonNullable<GitMirror['status']> {
  return h.cluster.gitMirrors.get('ns', name)?.status ?? {};
}

function ready(h: H, name = 'repo') {
  return findCondition(status(h, name).conditions, 'Ready');
}

/** A GitMirror, a token Secret the sidecars check, and `pods` running fleet pods (oldest first). */
function setup(pods: string[] = ['p1', 'p2']): H {
  const h = harness();
  h.cluster.secrets.set(`ns/${TOKEN_SECRET}`, { token: 'tok' });
  h.sidecars.tokens.set('ns', 'tok');
  h.cluster.addGitMirror('repo', { url: REPO_URL });
  for (const [i, name] of pods.entries()) h.cluster.addPod(name, { createdAt: `2026-01-01T00:00:0${i}Z` });
  return h;
}

/** Every fleet sidecar that holds the mirror finishes its restore. */
function finishAll(h: H, pods: string[]): void {
  for (const pod of pods) h.sidecars.of(`ns/${pod}`).finish(REPO_ID);
}

/** Hands out the mirror, lets `pods` finish their restores and reconciles again. */
async function warm(h: H, pods: string[]): Promise<void> {
  await h.gm('repo');
  finishAll(h, pods);
  await h.gm('repo');
}

describe('GitMirror reconcile: handing out the mirror', () => {
  test('adds the finalizer before any sidecar hears of the mirror', async () => {
    const h = setup();
    h.cluster.failNext('setGitMirrorFinalizers', 'KUBE_CONFLICT');
    await assert.rejects(h.gm('repo'), (err) => isOperatorError(err, 'KUBE_CONFLICT'));
    assert.equal(h.sidecars.calls.length, 0);
    await h.gm('repo');
    assert.deepEqual(h.cluster.gitMirrors.get('ns', 'repo')?.metadata.finalizers, [FINALIZER]);
  });

  test('puts the mirror to every fleet member, starts restores and reports warming', async () => {
    const h = setup(['p1', 'p2']);
    h.cluster.addPod('pending', { phase: 'Pending' });
    h.cluster.addPod('other-fleet', { cache: 'other' });
    h.cluster.addPod('leaving');
    h.cluster.updatePod('ns', 'leaving', (p) => ({
      ...p,
      metadata: { ...p.metadata, deletionTimestamp: '2026-01-01T00:00:50Z' },
    }));
    const result = await h.gm('repo');
    const puts = h.sidecars.calls.filter((c) => c.method === 'put');
    assert.deepEqual(puts.map((c) => c.pod).sort(), ['ns/p1', 'ns/p2']);
    assert.deepEqual(puts[0]?.spec, {
      url: REPO_URL,
      fetchIntervalSeconds: 300,
      snapshot: { writer: false, intervalSeconds: 3600, retain: 3 },
      access: 'Public',
    });
    assert.deepEqual(
      h.sidecars.calls
        .filter((c) => c.method === 'restore')
        .map((c) => c.pod)
        .sort(),
      ['ns/p1', 'ns/p2'],
    );
    assert.equal(result.requeueAfterMs, SETTINGS.warmingRequeueMs);
    assert.deepEqual(status(h).replicas, { total: 2, warm: 0 });
    assert.equal(status(h).repository, REPO_ID);
    assert.equal(status(h).observedGeneration, 1);
    assert.equal(ready(h)?.status, 'False');
    assert.equal(ready(h)?.reason, 'WarmingUp');
    assert.equal(ready(h)?.observedGeneration, 1);
  });

  test('creates the admin token Secret when the namespace has none, and uses it', async () => {
    const h = harness();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    h.cluster.addPod('p1');
    await h.gm('repo');
    const token = h.cluster.secrets.get(`ns/${TOKEN_SECRET}`)?.token;
    assert.ok(token && token.length >= 32);
    h.sidecars.tokens.set('ns', token);
    await h.gm('repo');
    assert.equal(h.sidecars.calls.filter((c) => c.method === 'get').length, 2);
  });

  test('reports a fleet without running pods as NoReplicas', async () => {
    const h = setup([]);
    const result = await h.gm('repo');
    assert.equal(ready(h)?.reason, 'NoReplicas');
    assert.deepEqual(status(h).replicas, { total: 0, warm: 0 });
    assert.ok((result.requeueAfterMs ?? 0) >= 60_000);
  });

  test('becomes Ready with the first warm replica and fills head, fetch time and snapshot', async () => {
    const h = setup(['p1', 'p2']);
    await h.gm('repo');
    h.sidecars.of('ns/p2').finish(REPO_ID, '2026-01-01T00:06:00Z');
    const snapshot = { key: 'k/2', commit: 'c0ffee', createdAt: '2026-01-01T00:04:00Z', sizeBytes: 42 };
    const p2 = h.sidecars.of('ns/p2');
    p2.mirrors.set(REPO_ID, { ...p2.mirrors.get(REPO_ID)!, latestSnapshot: snapshot });
    const older = { ...snapshot, key: 'k/1', createdAt: '2026-01-01T00:01:00Z' };
    const p1 = h.sidecars.of('ns/p1');
    p1.mirrors.set(REPO_ID, { ...p1.mirrors.get(REPO_ID)!, latestSnapshot: older });
    await h.gm('repo');
    assert.equal(ready(h)?.status, 'True');
    assert.equal(ready(h)?.message, '1/2 replicas warm');
    assert.equal(findCondition(status(h).conditions, 'Reconciling')?.status, 'True');
    assert.equal(status(h).head, 'c0ffee');
    assert.equal(status(h).lastFetchTime, '2026-01-01T00:06:00Z');
    assert.deepEqual(status(h).latestSnapshot, snapshot);
    assert.deepEqual(status(h).replicas, { total: 2, warm: 1 });
  });

  test('keeps the last known snapshot when no sidecar reports one', async () => {
    const h = setup(['p1']);
    const snapshot = { key: 'k/1', commit: 'c0ffee', createdAt: '2026-01-01T00:04:00Z', sizeBytes: 42 };
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({ ...gm, status: { latestSnapshot: snapshot } }));
    await h.gm('repo');
    assert.deepEqual(status(h).latestSnapshot, snapshot);
  });

  test('writes status only when it changed, and one Event per Ready transition', async () => {
    const h = setup(['p1']);
    await h.gm('repo');
    await h.gm('repo');
    assert.equal(h.cluster.statusPatches.length, 1);
    finishAll(h, ['p1']);
    await h.gm('repo');
    await h.gm('repo');
    assert.equal(h.cluster.statusPatches.length, 2);
    const reasons = h.cluster.events.map((e) => e.reason);
    assert.deepEqual(reasons, ['WarmingUp', 'Warm', 'WriterElected']);
    assert.equal(h.cluster.events[1]?.type, 'Normal');
    assert.equal(h.cluster.events[1]?.regarding.kind, 'GitMirror');
  });

  test('removes fields from status with null in the merge patch', async () => {
    const h = setup(['p1']);
    await warm(h, ['p1']);
    assert.equal(status(h).writer, 'p1');
    h.cluster.pods.delete('ns', 'p1');
    await h.gm('repo');
    assert.equal(status(h).writer, undefined);
    assert.equal(h.cluster.statusPatches.at(-1)?.patch.writer, null);
  });

  test('re-PUTs when the spec changes and records the new generation', async () => {
    const h = setup(['p1']);
    await h.gm('repo');
    const before = h.sidecars.calls.filter((c) => c.method === 'put').length;
    await h.gm('repo');
    assert.equal(
      h.sidecars.calls.filter((c) => c.method === 'put').length,
      before,
      'nothing changed: no PUT',
    );
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      metadata: { ...gm.metadata, generation: 2 },
      spec: { ...gm.spec, fetchInterval: '1m', snapshot: { interval: '2h', retain: 5 } },
    }));
    await h.gm('repo');
    const put = h.sidecars.calls.filter((c) => c.method === 'put').at(-1);
    assert.equal(put?.spec?.fetchIntervalSeconds, 60);
    assert.deepEqual(put?.spec?.snapshot, { writer: false, intervalSeconds: 7200, retain: 5 });
    assert.equal(status(h).observedGeneration, 2);
    assert.equal(ready(h)?.observedGeneration, 2);
  });

  test('hands lfs.prefetch to the sidecars, and leaves it out while it is None', async () => {
    const h = setup(['p1']);
    await h.gm('repo');
    const puts = () => h.sidecars.calls.filter((c) => c.method === 'put');
    assert.equal(
      puts().at(-1)?.spec?.lfs,
      undefined,
      'None: the spec, and its digest, as before prefetch existed',
    );
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      metadata: { ...gm.metadata, generation: 2 },
      spec: { ...gm.spec, lfs: { prefetch: 'Head' } },
    }));
    await h.gm('repo');
    assert.deepEqual(puts().at(-1)?.spec?.lfs, { prefetch: 'Head' });
    const count = puts().length;
    await h.gm('repo');
    assert.equal(puts().length, count, 'applied: no second PUT');
  });

  test('hands the mirror again to a sidecar that restarted empty', async () => {
    const h = setup(['p1']);
    await warm(h, ['p1']);
    h.sidecars.of('ns/p1').restart();
    await h.gm('repo');
    const last = h.sidecars.calls.slice(-3).map((c) => c.method);
    assert.deepEqual(last, ['get', 'put', 'restore']);
  });

  test('retries a failed restore only after the retry interval', async () => {
    const h = setup(['p1']);
    await h.gm('repo');
    h.sidecars.of('ns/p1').fail(REPO_ID, 'upstream said 503', '2026-01-01T00:01:00Z');
    await h.gm('repo');
    assert.equal(ready(h)?.reason, 'MirrorFailed');
    assert.match(ready(h)?.message ?? '', /upstream said 503/);
    const restores = () => h.sidecars.calls.filter((c) => c.method === 'restore').length;
    assert.equal(restores(), 1);
    h.clock.advance(SETTINGS.restoreRetryMs);
    await h.gm('repo');
    assert.equal(restores(), 2);
  });

  test('a fleet whose data volume cannot hold the mirror shows InsufficientStorage, naming the fleet and what is missing', async () => {
    const h = setup(['p1', 'p2']);
    await h.gm('repo');
    const MiB = 1024 * 1024;
    const shortfall = (missingBytes: number) => ({
      neededBytes: 12 * MiB,
      missingBytes,
      limitBytes: 8 * MiB,
      message: `restore of ${REPO_ID} needs 12 MiB: the data budget is 8 MiB, ...; ${missingBytes / MiB} MiB missing`,
    });
    h.sidecars.of('ns/p1').refuseForStorage(REPO_ID, shortfall(4 * MiB));
    h.sidecars.of('ns/p2').refuseForStorage(REPO_ID, shortfall(5 * MiB));
    await h.gm('repo');
    assert.equal(ready(h)?.status, 'False');
    assert.equal(ready(h)?.reason, 'InsufficientStorage');
    assert.match(
      ready(h)?.message ?? '',
      /^0\/2 replicas warm; fleet default: the data volume of 2\/2 replicas cannot hold this mirror, 5 MiB missing of the 12 MiB it needs \(data budget 8 MiB\); raise the fleet's data volume size \(chart: fleet.dataVolume.size\); pod p2: restore of .* 5 MiB missing$/,
    );
    // One replica with room serves: Ready, and Reconciling says why the other does not.
    h.sidecars.of('ns/p1').finish(REPO_ID);
    h.sidecars
      .of('ns/p1')
      .mirrors.set(REPO_ID, { ...h.sidecars.of('ns/p1').mirrors.get(REPO_ID)!, disk: {} });
    await h.gm('repo');
    assert.equal(ready(h)?.reason, 'Warm');
    const reconciling = status(h).conditions?.find((c) => c.type === 'Reconciling');
    assert.equal(reconciling?.reason, 'InsufficientStorage');
    assert.match(
      reconciling?.message ?? '',
      /^1\/2 replicas warm; fleet default: the data volume of 1\/2 replicas/,
    );
  });

  test('a sidecar that does not answer is retried while the others are synced', async () => {
    const h = setup(['p1', 'p2']);
    h.sidecars.of('ns/p2').down = true;
    await assert.rejects(h.gm('repo'), (err) => isOperatorError(err, 'SIDECAR_UNREACHABLE'));
    assert.ok(h.sidecars.of('ns/p1').mirrors.has(REPO_ID));
    assert.deepEqual(status(h).replicas, { total: 2, warm: 0 });
    assert.match(ready(h)?.message ?? '', /1 sidecar\(s\) not answering/);
    h.sidecars.of('ns/p2').down = false;
    await h.gm('repo');
    assert.ok(h.sidecars.of('ns/p2').mirrors.has(REPO_ID));
  });
});

describe('GitMirror reconcile: one snapshot writer', () => {
  test('elects the oldest warm pod, and keeps it when an older pod warms later', async () => {
    const h = setup(['old', 'young']);
    await h.gm('repo');
    h.sidecars.of('ns/young').finish(REPO_ID);
    await h.gm('repo');
    assert.deepEqual(h.sidecars.writersOf(REPO_ID), ['ns/young']);
    assert.equal(status(h).writer, 'young');
    h.sidecars.of('ns/old').finish(REPO_ID);
    await h.gm('repo');
    await h.gm('repo');
    assert.deepEqual(h.sidecars.writersOf(REPO_ID), ['ns/young']);
    assert.equal(status(h).writer, 'young');
  });

  test('picks the oldest of several warm pods, ties broken by name', async () => {
    const h = setup([]);
    h.cluster.addPod('b', { createdAt: '2026-01-01T00:00:00Z' });
    h.cluster.addPod('a', { createdAt: '2026-01-01T00:00:00Z' });
    h.cluster.addPod('c', { createdAt: '2025-12-31T00:00:00Z' });
    await h.gm('repo');
    finishAll(h, ['a', 'b']);
    await h.gm('repo');
    assert.equal(status(h).writer, 'a');
  });

  test('moves the role when the writer goes away', async () => {
    const h = setup(['p1', 'p2']);
    await warm(h, ['p1', 'p2']);
    assert.equal(status(h).writer, 'p1');
    h.cluster.pods.delete('ns', 'p1');
    await h.gm('repo');
    assert.deepEqual(
      h.sidecars.writersOf(REPO_ID).filter((p) => p !== 'ns/p1'),
      ['ns/p2'],
    );
    assert.equal(status(h).writer, 'p2');
    assert.equal(h.cluster.events.filter((e) => e.reason === 'WriterElected').length, 2);
  });

  test('demotes a terminating writer before promoting its successor', async () => {
    const h = setup(['p1', 'p2']);
    await warm(h, ['p1', 'p2']);
    h.cluster.updatePod('ns', 'p1', (p) => ({
      ...p,
      metadata: { ...p.metadata, deletionTimestamp: '2026-01-01T00:02:00Z' },
    }));
    const from = h.sidecars.calls.length;
    await h.gm('repo');
    const puts = h.sidecars.calls.slice(from).filter((c) => c.method === 'put');
    assert.deepEqual(
      puts.map((c) => `${c.pod}:${c.spec?.snapshot?.writer}`),
      ['ns/p1:false', 'ns/p2:true'],
    );
    assert.deepEqual(h.sidecars.writersOf(REPO_ID), ['ns/p2']);
    assert.deepEqual(status(h).replicas, { total: 1, warm: 1 });
  });

  test('does not promote while the previous writer cannot be demoted', async () => {
    const h = setup(['p1', 'p2']);
    await warm(h, ['p1', 'p2']);
    h.cluster.updatePod('ns', 'p1', (p) => ({
      ...p,
      metadata: { ...p.metadata, deletionTimestamp: '2026-01-01T00:02:00Z' },
    }));
    h.sidecars.of('ns/p1').failNext('put', 'SIDECAR_TIMEOUT');
    await assert.rejects(
      h.gm('repo'),
      (err) =>
        isOperatorError(err, 'WRITER_HANDOVER_BLOCKED') &&
        err.kind === 'waiting' &&
        err.requeueAfterMs === SETTINGS.warmingRequeueMs,
    );
    assert.deepEqual(h.sidecars.writersOf(REPO_ID), ['ns/p1']);
    assert.equal(status(h).writer, 'p1');
    h.cluster.pods.delete('ns', 'p1');
    await h.gm('repo');
    assert.equal(status(h).writer, 'p2');
  });

  test('keeps a writer that stops answering instead of electing a second one', async () => {
    const h = setup(['p1', 'p2']);
    await warm(h, ['p1', 'p2']);
    h.sidecars.of('ns/p1').down = true;
    await assert.rejects(h.gm('repo'));
    assert.deepEqual(h.sidecars.writersOf(REPO_ID), ['ns/p1']);
    assert.equal(status(h).writer, 'p1');
  });

  test('at most one writer through pods coming and going', async () => {
    const h = setup(['p1', 'p2', 'p3']);
    const steps: ((h: H) => void)[] = [
      (h) => finishAll(h, ['p2']),
      (h) => finishAll(h, ['p1', 'p3']),
      (h) => h.cluster.pods.delete('ns', 'p2'),
      (h) => h.cluster.addPod('p4', { createdAt: '2026-01-01T00:00:00Z' }),
      (h) => h.sidecars.of('ns/p4').finish(REPO_ID),
      (h) => h.cluster.pods.delete('ns', 'p1'),
      (h) => h.cluster.pods.delete('ns', 'p3'),
    ];
    await h.gm('repo');
    for (const step of steps) {
      step(h);
      await h.gm('repo').catch(() => {});
      const live = new Set(h.cluster.pods.list().map((p) => `ns/${p.metadata.name}`));
      const writers = h.sidecars.writersOf(REPO_ID).filter((p) => live.has(p));
      assert.ok(writers.length <= 1, `writers ${writers.join(',')}`);
    }
    assert.equal(status(h).writer, 'p4');
  });
});

describe('GitMirror reconcile: credentials', () => {
  test('a missing Secret stalls the GitMirror without calling any sidecar', async () => {
    const h = setup(['p1']);
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, credentialsSecretRef: { name: 'upstream' } },
    }));
    await assert.rejects(h.gm('repo'), (err) => isOperatorError(err, 'CREDENTIALS_NOT_FOUND'));
    assert.equal(h.sidecars.calls.length, 0);
    assert.equal(ready(h)?.reason, 'CredentialsNotFound');
    assert.equal(findCondition(status(h).conditions, 'Stalled')?.status, 'True');
    assert.equal(h.cluster.events.at(-1)?.type, 'Warning');
  });

  test('a Secret without password or token is reported as invalid', async () => {
    const h = setup(['p1']);
    h.cluster.secrets.set('ns/upstream', { username: 'bot' });
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, credentialsSecretRef: { name: 'upstream' } },
    }));
    await assert.rejects(h.gm('repo'), (err) => errorKind(err) === 'stalled');
    assert.equal(ready(h)?.reason, 'CredentialsInvalid');
  });

  test('credentials reach the sidecar, defaulting access to Private, and nowhere else', async () => {
    const h = setup(['p1']);
    h.cluster.secrets.set('ns/upstream', { username: 'bot', password: 's3cret-value' });
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, credentialsSecretRef: { name: 'upstream' } },
    }));
    await h.gm('repo');
    const put = h.sidecars.calls.find((c) => c.method === 'put');
    assert.deepEqual(put?.spec?.credentials, { username: 'bot', password: 's3cret-value' });
    assert.equal(put?.spec?.access, 'Private');
    finishAll(h, ['p1']);
    await h.gm('repo');
    const visible = JSON.stringify([h.cluster.events, h.cluster.gitMirrors.list(), h.cluster.statusPatches]);
    assert.ok(!visible.includes('s3cret-value'));
  });

  test('a rotated password is PUT again; an unchanged one is not', async () => {
    const h = setup(['p1']);
    h.cluster.secrets.set('ns/upstream', { token: 'one' });
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, credentialsSecretRef: { name: 'upstream' } },
    }));
    await h.gm('repo');
    await h.gm('repo');
    const puts = () => h.sidecars.calls.filter((c) => c.method === 'put');
    assert.equal(puts().length, 1);
    h.cluster.secrets.set('ns/upstream', { token: 'two' });
    await h.gm('repo');
    assert.equal(puts().length, 2);
    assert.deepEqual(puts()[1]?.spec?.credentials, { password: 'two' });
  });
});

describe('GitMirror reconcile: errors before the fleet is asked show in conditions', () => {
  function condition(h: H, type: string) {
    return findCondition(status(h).conditions, type);
  }

  test('a finalizer that cannot be added: Reconciling with the error, retried with backoff', async () => {
    const h = setup(['p1']);
    h.cluster.failNext('setGitMirrorFinalizers', 'KUBE_FORBIDDEN');
    await assert.rejects(
      h.gm('repo'),
      (err) => isOperatorError(err, 'KUBE_FORBIDDEN') && err.kind === 'transient',
    );
    assert.equal(h.sidecars.calls.length, 0);
    assert.equal(condition(h, 'Reconciling')?.status, 'True');
    assert.equal(condition(h, 'Reconciling')?.reason, 'ProgressingWithRetry');
    assert.match(condition(h, 'Reconciling')?.message ?? '', /KUBE_FORBIDDEN: injected/);
    assert.equal(ready(h)?.status, 'False');
    assert.equal(ready(h)?.reason, 'ProgressingWithRetry');
    assert.equal(condition(h, 'Stalled')?.status, 'False');
    await h.gm('repo');
    assert.equal(ready(h)?.reason, 'WarmingUp');
    assert.equal(condition(h, 'Reconciling')?.reason, 'WarmingUp');
  });

  test('an admin token Secret that cannot be created', async () => {
    const h = harness();
    h.cluster.addGitMirror('repo', { url: REPO_URL });
    h.cluster.addPod('p1');
    h.cluster.failNext('createSecret', 'KUBE_FORBIDDEN', 'secrets is forbidden');
    await assert.rejects(h.gm('repo'), (err) => isOperatorError(err, 'KUBE_FORBIDDEN'));
    assert.equal(h.sidecars.calls.length, 0);
    assert.match(ready(h)?.message ?? '', /KUBE_FORBIDDEN: secrets is forbidden/);
    assert.equal(status(h).repository, REPO_ID, 'the id was known before the token');
  });

  test('a credentials Secret that cannot be read leaves a True Ready standing', async () => {
    const h = setup(['p1']);
    await warm(h, ['p1']);
    h.cluster.secrets.set('ns/upstream', { token: 't' });
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, credentialsSecretRef: { name: 'upstream' } },
    }));
    h.cluster.failNext('readSecret', 'KUBE_UNAVAILABLE');
    await assert.rejects(h.gm('repo'), (err) => errorKind(err) === 'transient');
    assert.equal(ready(h)?.status, 'True', 'the replicas still serve');
    assert.equal(condition(h, 'Reconciling')?.reason, 'ProgressingWithRetry');
    assert.match(condition(h, 'Reconciling')?.message ?? '', /KUBE_UNAVAILABLE/);
    assert.equal(status(h).writer, 'p1', 'what the fleet said last is kept');
  });

  test('an invalid spec stalls until the spec changes', async () => {
    const h = setup(['p1']);
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, url: 'https://github.com/org/%2e%2e' },
    }));
    await assert.rejects(
      h.gm('repo'),
      (err) => isOperatorError(err, 'SPEC_INVALID') && err.kind === 'stalled',
    );
    assert.equal(h.sidecars.calls.length, 0);
    assert.equal(condition(h, 'Stalled')?.status, 'True');
    assert.equal(condition(h, 'Stalled')?.reason, 'InvalidSpec');
    assert.equal(ready(h)?.reason, 'InvalidSpec');
    assert.match(ready(h)?.message ?? '', /^spec\.url: /);
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({ ...gm, spec: { ...gm.spec, url: REPO_URL } }));
    await h.gm('repo');
    assert.equal(condition(h, 'Stalled')?.status, 'False');
    assert.equal(ready(h)?.reason, 'WarmingUp');
  });

  test('a stall on a missing Secret ends when the Secret appears', async () => {
    const h = setup(['p1']);
    h.cluster.updateGitMirror('ns', 'repo', (gm) => ({
      ...gm,
      spec: { ...gm.spec, credentialsSecretRef: { name: 'upstream' } },
    }));
    await assert.rejects(h.gm('repo'), (err) => errorKind(err) === 'stalled');
    h.cluster.secrets.set('ns/upstream', { token: 't' });
    await h.gm('repo');
    assert.equal(condition(h, 'Stalled')?.status, 'False');
    assert.equal(ready(h)?.reason, 'WarmingUp');
    assert.equal(h.sidecars.calls.filter((c) => c.method === 'put').length, 1);
  });
});

describe('GitMirror reconcile: deletion', () => {
  async function deleted(h: H) {
    await h.gm('repo');
    h.cluster.deleteGitMirror('ns', 'repo', '2026-01-01T00:01:00Z');
    assert.ok(h.cluster.gitMirrors.get('ns', 'repo'), 'the finalizer holds the object');
  }

  test('removes the mirror from every reachable sidecar, then drops the finalizer', async () => {
    const h = setup(['p1', 'p2']);
    await deleted(h);
    await h.gm('repo');
    assert.deepEqual(
      h.sidecars.calls
        .filter((c) => c.method === 'delete')
        .map((c) => c.pod)
        .sort(),
      ['ns/p1', 'ns/p2'],
    );
    assert.equal(h.sidecars.of('ns/p1').mirrors.size, 0);
    assert.equal(h.cluster.gitMirrors.get('ns', 'repo'), undefined);
  });

  test('waits for an unreachable sidecar, then gives up after the grace period with a Warning', async () => {
    const h = setup(['p1', 'p2']);
    await deleted(h);
    h.sidecars.of('ns/p2').down = true;
    await assert.rejects(h.gm('repo'), (err) => isOperatorError(err, 'SIDECAR_UNREACHABLE'));
    assert.ok(h.cluster.gitMirrors.get('ns', 'repo'));
    h.clock.advance(SETTINGS.cleanupGraceMs);
    await h.gm('repo');
    assert.equal(h.cluster.gitMirrors.get('ns', 'repo'), undefined);
    const warning = h.cluster.events.find((e) => e.reason === 'CleanupIncomplete');
    assert.equal(warning?.type, 'Warning');
  });

  test('a conflict while dropping the finalizer is retried', async () => {
    const h = setup(['p1']);
    await deleted(h);
    h.cluster.failNext('setGitMirrorFinalizers', 'KUBE_CONFLICT');
    await assert.rejects(h.gm('repo'), (err) => isOperatorError(err, 'KUBE_CONFLICT'));
    await h.gm('repo');
    assert.equal(h.cluster.gitMirrors.get('ns', 'repo'), undefined);
  });

  test('a GitMirror already gone is nothing to do', async () => {
    const h = setup(['p1']);
    assert.deepEqual(await h.gm('missing'), {});
    assert.equal(h.sidecars.calls.length, 0);
  });
});

describe('GitMirror reconcile: upstream trouble', () => {
  test('Fresh turns False with the error and the age of the data while replicas cannot fetch, and back', async () => {
    const h = setup(['p1', 'p2']);
    await warm(h, ['p1', 'p2']);
    assert.equal(findCondition(status(h).conditions, 'Fresh')?.status, 'True');
    const sidecar = h.sidecars.of('ns/p1');
    const m = sidecar.mirrors.get(REPO_ID)!;
    sidecar.mirrors.set(REPO_ID, {
      ...m,
      lastFetchError: 'PROCESS_FAILED: git fetch exited with 128: 503',
      stalenessSeconds: 900,
    });
    await h.gm('repo');
    const fresh = findCondition(status(h).conditions, 'Fresh');
    assert.equal(fresh?.status, 'False');
    assert.equal(fresh?.reason, 'FetchFailing');
    assert.match(
      fresh?.message ?? '',
      /1\/2 warm replicas cannot fetch from upstream, serving data 900s old: .*503/,
    );
    assert.equal(ready(h)?.status, 'True', 'stale data is still served: Ready stays True');
    sidecar.mirrors.set(REPO_ID, { ...m, lastFetchError: undefined, stalenessSeconds: 3 });
    await h.gm('repo');
    assert.equal(findCondition(status(h).conditions, 'Fresh')?.status, 'True');
  });
});

describe('GitMirror reconcile: the first snapshot', () => {
  test('polls at the warming pace until the writer has published, then settles', async () => {
    const h = setup(['p1']);
    await warm(h, ['p1']);
    const waiting = await h.gm('repo');
    assert.ok(status(h).writer, 'a writer was chosen');
    assert.equal(waiting.requeueAfterMs, SETTINGS.warmingRequeueMs, 'no snapshot yet: look again soon');
    const sidecar = h.sidecars.of('ns/p1');
    const m = sidecar.mirrors.get(REPO_ID)!;
    const key = `${REPO_ID}/20260101T000600Z-${'c'.repeat(40)}.tar.zst`;
    sidecar.mirrors.set(REPO_ID, {
      ...m,
      latestSnapshot: { key, commit: 'c'.repeat(40), createdAt: '2026-01-01T00:06:00Z', sizeBytes: 10 },
    });
    const settled = await h.gm('repo');
    assert.equal(status(h).latestSnapshot?.key, key);
    assert.ok((settled.requeueAfterMs ?? 0) > SETTINGS.warmingRequeueMs);
  });
});
