import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ApiServerRestart } from '../cluster/control-plane-processes.ts';
import type { Pod } from '../kubelet/pod-types.ts';
import { type Environment, NAMESPACE, startEnvironment } from './support/environment.ts';
import {
  applyGitMirror,
  condition,
  FLEET_SELECTOR,
  fleetPods,
  getGitMirror,
  getPod,
  isReady,
  leaseHolder,
  OPERATOR_SELECTOR,
  operatorPods,
  sidecarMirrors,
  snapshotWriters,
  WARM_GATE,
} from './support/gitmirror.ts';
import { watchNotReady, watchSingleWriter } from './support/observers.ts';
import { waitFor } from './support/poll.ts';

/**
 * kube-apiserver goes away and comes back (same address, port and etcd) while a new fleet pod
 * warms up: first a crash (SIGKILL) and a start 3 s later, shorter than the operator leader's
 * renew deadline (10 s); then a stop as a kubelet stops a static pod (SIGTERM: kube-apiserver
 * stops listening at once but drains for up to 60 s; SIGKILL after the default 30 s grace) and
 * a start 5 s later, so the leader loses its Lease, exits and comes back. Everything
 * that watches the API must notice by itself: the operator's informers and leader election,
 * kube-controller-manager, the test kubelet and scheduler, the loopback forwarder. What a user
 * would see is checked: the warm-up completes and the pod turns Ready, a GitMirror created or
 * changed after the restart is reconciled, a pod created after it warms and turns Ready, no pod
 * stays NotReady for long, and never are there two snapshot writers of one mirror.
 */

const REPO = 'repo-r';
const LATE_REPO = 'repo-late';
/** Every upload-pack waits this long: the new pod's catch-up fetch outlasts the restart's start. */
const UPSTREAM_DELAY_MS = 25_000;
/** No pod may be NotReady longer than this (the GitMirrors' warm-up timeout is 10 min). */
const MAX_NOT_READY_MS = 180_000;
const READY_TIMEOUT_MS = 240_000;

describe('kube-apiserver restarted during a warm-up', {
  timeout: 1_500_000,
  skip: process.env.GITMIRROR_E2E_KUBECONFIG ? 'restarts the suite’s own kube-apiserver' : false,
}, () => {
  let env: Environment;
  let restartApiServer: NonNullable<Environment['cluster']['restartApiServer']>;
  const ids = () => [env.mirrorId(REPO), env.mirrorId(LATE_REPO)];

  before(async () => {
    env = await startEnvironment([REPO, LATE_REPO]);
    restartApiServer = env.cluster.restartApiServer!;
    await env.install();
    await applyGitMirror(env, REPO, env.upstreamUrl(REPO), { fetchInterval: '1m' });
    await waitFor(
      'a published snapshot',
      async () => (await getGitMirror(env, REPO)).status?.latestSnapshot,
      { timeoutMs: 300_000 },
    );
  });

  after(async () => {
    env?.upstream.delayUploadPack(0);
    await env?.stop();
  });

  it('SIGKILL, down 3 s: the warm-up completes, and a GitMirror created afterwards is reconciled', async (t) => {
    const writers = watchSingleWriter(env, ids);
    const notReady = watchNotReady(env, [FLEET_SELECTOR, OPERATOR_SELECTOR], MAX_NOT_READY_MS);
    const warming = await scaleUpSlowly(env, 3);
    const leader = await leaseHolder(env);

    const restart = await restartApiServer({ signal: 'SIGKILL', downForMs: 3_000 });
    const backAt = Date.now();
    env.upstream.delayUploadPack(0);
    t.diagnostic(describeRestart(restart));

    // The informers must be watching again: a GitMirror they have never seen.
    await applyGitMirror(env, LATE_REPO, env.upstreamUrl(LATE_REPO), { fetchInterval: '1m' });
    await env.cluster.kubectl(
      ['wait', '--for=condition=Ready', `gitmirror/${LATE_REPO}`, '-n', NAMESPACE, '--timeout=240s'],
      { timeoutMs: READY_TIMEOUT_MS + 10_000 },
    );
    const lateReadyMs = Date.now() - backAt;
    const warmed = await waitReady(env, warming.metadata.name);
    const warmedMs = Date.now() - backAt;
    await waitFor(
      `${LATE_REPO}: 3 of 3 replicas warm`,
      async () => {
        const replicas = (await getGitMirror(env, LATE_REPO)).status?.replicas;
        return replicas?.total === 3 && replicas.warm === 3;
      },
      { timeoutMs: READY_TIMEOUT_MS },
    );

    const [writerReport, readiness] = [await writers.stop(), await notReady.stop()];
    t.diagnostic(
      `after the restart: ${LATE_REPO} Ready in ${lateReadyMs} ms, ${warming.metadata.name} Ready in ${warmedMs} ms; ` +
        `lease ${leader} → ${await leaseHolder(env)}; ${writerReport.samples} writer samples; ` +
        `readiness: ${readiness.samples} samples (${readiness.errors} failed), longest NotReady ${longest(readiness)}`,
    );
    assert.equal(condition(warmed, WARM_GATE)?.reason, 'Warm');
    const mirror = (await sidecarMirrors(env, warmed.metadata.name)).find((m) => m.id === env.mirrorId(REPO));
    assert.equal(mirror?.restore.source, 'snapshot', JSON.stringify(mirror?.restore));
    assert.ok(mirror?.ready);
    assertNoViolations(writerReport.violations, readiness.violations);
    assert.ok(writerReport.samples >= 10, `only ${writerReport.samples} writer samples`);
    await assertSettled(env, 3);
  });

  it('SIGTERM, SIGKILL 30 s later, down 5 s (past the leader’s renew deadline): the warm-up completes, a changed GitMirror and a new pod are reconciled', async (t) => {
    const writers = watchSingleWriter(env, ids);
    const notReady = watchNotReady(env, [FLEET_SELECTOR, OPERATOR_SELECTOR], MAX_NOT_READY_MS);
    const warming = await scaleUpSlowly(env, 4);
    const leader = await leaseHolder(env);
    const restartsBefore = await operatorRestarts(env);

    const restart = await restartApiServer({ signal: 'SIGTERM', stopGraceMs: 30_000, downForMs: 5_000 });
    const backAt = Date.now();
    env.upstream.delayUploadPack(0);
    t.diagnostic(describeRestart(restart));

    // A spec change after the restart: the new generation is observed and Ready again.
    await env.cluster.kubectl([
      'patch',
      'gitmirror',
      REPO,
      '-n',
      NAMESPACE,
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { fetchInterval: '2m' } }),
    ]);
    const observed = await waitFor(
      `${REPO}: the new generation observed and Ready`,
      async () => {
        const gm = await getGitMirror(env, REPO);
        const ready = gm.status?.conditions?.find((c) => c.type === 'Ready');
        return gm.status?.observedGeneration === gm.metadata.generation &&
          ready?.status === 'True' &&
          ready.observedGeneration === gm.metadata.generation
          ? gm
          : undefined;
      },
      { timeoutMs: READY_TIMEOUT_MS },
    );
    const observedMs = Date.now() - backAt;
    const warmed = await waitReady(env, warming.metadata.name);
    const warmedMs = Date.now() - backAt;

    // A pod created after the restart: scheduled, started, warmed and gated as usual.
    const before = new Set((await fleetPods(env)).map((p) => p.metadata.name));
    await env.upgrade({ fleet: { replicas: 5 } });
    const added = await waitFor(
      'a fifth fleet pod',
      async () => (await fleetPods(env)).find((p) => !before.has(p.metadata.name)),
      { timeoutMs: 60_000 },
    );
    const addedReady = await waitReady(env, added.metadata.name);
    const successor = await waitFor('a Lease holder', () => leaseHolder(env), { timeoutMs: 60_000 });

    const [writerReport, readiness] = [await writers.stop(), await notReady.stop()];
    const restartsAfter = await operatorRestarts(env);
    t.diagnostic(
      `after the restart: generation ${observed.metadata.generation} observed in ${observedMs} ms, ` +
        `${warming.metadata.name} Ready in ${warmedMs} ms, ${added.metadata.name} Ready in ${Date.now() - backAt} ms; ` +
        `lease ${leader} → ${successor}; operator container restarts ${JSON.stringify(restartsBefore)} → ${JSON.stringify(restartsAfter)}; ` +
        `${writerReport.samples} writer samples; readiness: ${readiness.samples} samples (${readiness.errors} failed), ` +
        `longest NotReady ${longest(readiness)}`,
    );
    for (const pod of [warmed, addedReady]) {
      assert.equal(condition(pod, WARM_GATE)?.reason, 'Warm', pod.metadata.name);
      for (const mirror of await sidecarMirrors(env, pod.metadata.name)) {
        assert.ok(mirror.ready, `${mirror.id} on ${pod.metadata.name} is ${mirror.state}`);
      }
    }
    const mirror = (await sidecarMirrors(env, warmed.metadata.name)).find((m) => m.id === env.mirrorId(REPO));
    assert.equal(mirror?.restore.source, 'snapshot', JSON.stringify(mirror?.restore));
    assertNoViolations(writerReport.violations, readiness.violations);
    assert.ok(writerReport.samples >= 10, `only ${writerReport.samples} writer samples`);
    await assertSettled(env, 5);
  });
});

/**
 * Slows every upload-pack down, scales the fleet up to `replicas` and returns the new pod once
 * its sidecar is restoring (or cloning): its warm-up is under way and cannot finish soon.
 */
async function scaleUpSlowly(env: Environment, replicas: number): Promise<Pod> {
  const before = new Set((await fleetPods(env)).map((p) => p.metadata.name));
  env.upstream.delayUploadPack(UPSTREAM_DELAY_MS);
  await env.upgrade({ fleet: { replicas } });
  const warming = await waitFor(
    'the new pod to be warming',
    async () => {
      const pod = (await fleetPods(env)).find((p) => !before.has(p.metadata.name));
      if (!pod?.status?.podIP) return undefined;
      const mirror = (await sidecarMirrors(env, pod.metadata.name)).find((m) => m.id === env.mirrorId(REPO));
      return mirror && !mirror.ready && (mirror.state === 'restoring' || mirror.state === 'cloning')
        ? pod
        : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
  assert.notEqual(condition(await getPod(env, warming.metadata.name), WARM_GATE)?.status, 'True');
  return warming;
}

async function waitReady(env: Environment, name: string): Promise<Pod> {
  return waitFor(
    `${name} to turn Ready`,
    async () => {
      const pod = await getPod(env, name);
      return isReady(pod) ? pod : undefined;
    },
    { timeoutMs: READY_TIMEOUT_MS },
  );
}

/**
 * Every fleet and operator pod Ready (a restarted operator needs its informers to list first),
 * one writer per mirror, and the Lease held by an operator pod.
 */
async function assertSettled(env: Environment, fleetSize: number): Promise<void> {
  const fleet = await fleetPods(env);
  assert.equal(fleet.length, fleetSize);
  const operators = await waitFor(
    'every fleet and operator pod Ready',
    async () => {
      const pods = [...(await fleetPods(env)), ...(await operatorPods(env))];
      const notReady = pods.filter((p) => !isReady(p)).map((p) => p.metadata.name);
      if (notReady.length > 0) throw new Error(`not Ready: ${notReady.join(', ')}`);
      return operatorPods(env);
    },
    { timeoutMs: 90_000 },
  );
  for (const id of [env.mirrorId(REPO), env.mirrorId(LATE_REPO)]) {
    const writers = await waitFor(`one snapshot writer of ${id}`, async () => {
      const list = await snapshotWriters(env, id);
      return list.length === 1 ? list : undefined;
    });
    assert.equal(writers.length, 1);
  }
  const holder = await leaseHolder(env);
  assert.ok(
    operators.some((p) => p.metadata.name === holder),
    `the Lease holder ${holder} is not an operator pod`,
  );
}

async function operatorRestarts(env: Environment): Promise<Record<string, number>> {
  return Object.fromEntries(
    (await operatorPods(env)).map((p) => [
      p.metadata.name,
      (p.status?.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0),
    ]),
  );
}

function describeRestart(r: ApiServerRestart): string {
  const how = r.exit.signal ?? `exit ${r.exit.code}`;
  return (
    `kube-apiserver ${r.signal} → gone in ${r.stopMs} ms (${how}), down ${r.downMs} ms, ` +
    `ready ${r.readyMs} ms after start; unavailable ${r.unavailableMs} ms in all`
  );
}

function longest(report: { longestMs: Map<string, number> }): string {
  const [name, ms] = [...report.longestMs].sort((a, b) => b[1] - a[1])[0] ?? ['none', 0];
  return `${ms} ms (${name})`;
}

function assertNoViolations(writers: string[], readiness: string[]): void {
  assert.deepEqual(writers, [], 'two snapshot writers');
  assert.deepEqual(readiness, [], 'pods stuck NotReady');
}
