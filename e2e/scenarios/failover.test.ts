import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Environment, NAMESPACE, startEnvironment } from './support/environment.ts';
import {
  applyGitMirror,
  condition,
  fleetPods,
  getGitMirror,
  getPod,
  isReady,
  leaseHolder,
  operatorPods,
  sidecarMirrors,
  snapshotWriters,
  WARM_GATE,
} from './support/gitmirror.ts';
import { watchSingleWriter } from './support/observers.ts';
import { waitFor } from './support/poll.ts';

/**
 * Operator fail-over: the leader is killed (force-deleted, so it cannot release its Lease)
 * while a new fleet pod is warming up; the standby must take the Lease, finish that warm-up and
 * open the pod's gate, and at no moment may two sidecars be snapshot writers of one mirror.
 */

const REPO = 'repo-c';
/** Long enough that the leader is surely killed while the new pod still catches up. */
const UPSTREAM_DELAY_MS = 20_000;

describe('operator leader fail-over during a warm-up', { timeout: 1_200_000 }, () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment([REPO]);
    await env.install();
    await applyGitMirror(env, REPO, env.upstreamUrl(REPO), { fetchInterval: '1m' });
    await waitFor(
      'a published snapshot',
      async () => (await getGitMirror(env, REPO)).status?.latestSnapshot,
      {
        timeoutMs: 300_000,
      },
    );
  });

  after(async () => {
    await env?.stop();
  });

  it('another replica takes the Lease, the warm-up completes, and there is never a second writer', async (t) => {
    const writers = watchSingleWriter(env, () => [env.mirrorId(REPO)]);
    const before = new Set((await fleetPods(env)).map((p) => p.metadata.name));
    // Every upload-pack from now on waits: the new pod's catch-up fetch after its restore.
    env.upstream.delayUploadPack(UPSTREAM_DELAY_MS);
    await env.upgrade({ fleet: { replicas: 3 } });
    const warming = await waitFor(
      'the new pod to be warming',
      async () => {
        const pod = (await fleetPods(env)).find((p) => !before.has(p.metadata.name));
        if (!pod?.status?.podIP) return undefined;
        const mirror = (await sidecarMirrors(env, pod.metadata.name)).find(
          (m) => m.id === env.mirrorId(REPO),
        );
        return mirror && !mirror.ready && mirror.state === 'restoring' ? pod : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    const leader = await leaseHolder(env);
    assert.ok(leader, 'no operator holds the Lease');
    assert.notEqual(condition(await getPod(env, warming.metadata.name), WARM_GATE)?.status, 'True');
    // A crash, not a shutdown: SIGKILL first (on the suite's own node), so the leader cannot
    // release its Lease; then the pod goes, so it does not come back under the same identity.
    // On an existing cluster only the force delete is possible (the runtime's SIGTERM comes first).
    env.cluster.kubelet?.crash(NAMESPACE, leader);
    await env.cluster.kubectl(['delete', 'pod', leader, '-n', NAMESPACE, '--grace-period=0', '--force']);
    if (env.cluster.kubelet)
      assert.equal(await leaseHolder(env), leader, 'a crashed leader released its Lease');

    const successor = await waitFor(
      'another operator to take the Lease',
      async () => {
        const holder = await leaseHolder(env);
        return holder && holder !== leader ? holder : undefined;
      },
      { timeoutMs: 90_000 },
    );
    assert.ok(
      (await operatorPods(env)).some((p) => p.metadata.name === successor),
      `the new holder ${successor} is not an operator pod`,
    );
    const warmed = await waitFor(
      'the new pod to turn Ready',
      async () => {
        const pod = await getPod(env, warming.metadata.name);
        return isReady(pod) ? pod : undefined;
      },
      { timeoutMs: 180_000 },
    );
    env.upstream.delayUploadPack(0);
    const report = await writers.stop();
    t.diagnostic(`leader ${leader} → ${successor}; ${report.samples} writer samples`);
    assert.equal(condition(warmed, WARM_GATE)?.reason, 'Warm');
    const mirror = (await sidecarMirrors(env, warmed.metadata.name)).find((m) => m.id === env.mirrorId(REPO));
    assert.equal(mirror?.restore.source, 'snapshot');
    assert.deepEqual(report.violations, []);
    assert.ok(report.samples >= 10, `only ${report.samples} writer samples`);
    assert.equal((await snapshotWriters(env, env.mirrorId(REPO))).length, 1);
  });
});
