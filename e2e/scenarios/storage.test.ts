import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../testing/git.ts';
import { makeIncompressibleRepo } from '../../testing/git-repos.ts';
import type { Pod } from '../kubelet/pod-types.ts';
import { type Environment, NAMESPACE, startEnvironment } from './support/environment.ts';
import {
  applyGitMirror,
  cloneThrough,
  condition,
  fleetPods,
  getGitMirror,
  isReady,
  sidecarMetric,
  sidecarMirrors,
  upstreamHead,
  WARM_GATE,
} from './support/gitmirror.ts';
import { waitFor } from './support/poll.ts';

/**
 * A fleet whose data volume cannot hold a GitMirror's snapshot. Without a budget each new pod
 * would restore until the kubelet evicts it, and its replacement would do the same; with the
 * budget the chart derives from the volume's size limit, the restore is refused before it
 * writes, the GitMirror says InsufficientStorage and by how much, the pods follow the
 * mirror's onTimeout, and a helm upgrade to a bigger volume makes it Ready. The suite's
 * kubelet evicts a pod whose emptyDir passes its sizeLimit, as a node's does (last test).
 */

const REPO = 'big';
const REPO_MIB = 6;
const SMALL = '4Mi';
const MiB = 1024 * 1024;

describe('a fleet whose data volume is too small for a GitMirror', { timeout: 1_200_000 }, () => {
  let env: Environment;
  const ever = new Map<string, Pod>();

  /** Every fleet pod seen so far, last state kept: an evicted or restarted one cannot hide. */
  async function watchPods(): Promise<Pod[]> {
    const pods = await fleetPods(env);
    for (const pod of pods) ever.set(pod.metadata.uid ?? pod.metadata.name, pod);
    return pods;
  }

  function assertNoneEvictedOrRestarted(): void {
    for (const pod of ever.values()) {
      assert.notEqual(pod.status?.reason, 'Evicted', `${pod.metadata.name} was evicted`);
      for (const c of pod.status?.containerStatuses ?? [])
        assert.equal(c.restartCount, 0, `${pod.metadata.name}/${c.name} restarted`);
    }
  }

  const readyCondition = async () =>
    (await getGitMirror(env, REPO)).status?.conditions?.find((c) => c.type === 'Ready');

  before(async () => {
    env = await startEnvironment([], {
      // REPO_MIB MiB that do not compress, so the snapshot is as big as the mirror.
      createRepos: async (root) => {
        const bare = await makeIncompressibleRepo(join(root, `${REPO}.git`), REPO_MIB, MiB);
        const work = join(root, `${REPO}-pusher.git`);
        await git(['clone', '--bare', '--quiet', bare, work]);
        return new Map([[REPO, { bare, work }]]);
      },
    });
    await env.install();
    await applyGitMirror(env, REPO, env.upstreamUrl(REPO), {
      fetchInterval: '1m',
      warmup: { timeout: '30s', onTimeout: 'Open' },
    });
    await waitFor(
      'the snapshot published by a fleet with room',
      async () => (await getGitMirror(env, REPO)).status?.latestSnapshot,
      { timeoutMs: 300_000 },
    );
  });

  after(async () => {
    await env?.stop();
  });

  it('refuses the restore before writing, shows InsufficientStorage, follows onTimeout, evicts and restarts no pod', async (t) => {
    await env.upgrade({ fleet: { dataVolume: { size: SMALL } } });
    const ready = await waitFor(
      'Ready False, InsufficientStorage, once only small-volume pods remain',
      async () => {
        await watchPods();
        const c = await readyCondition();
        return c?.status === 'False' && c.reason === 'InsufficientStorage' ? c : undefined;
      },
      { timeoutMs: 400_000, intervalMs: 1000 },
    );
    t.diagnostic(ready.message ?? '');
    const budget = Math.floor(4 * MiB * 0.9);
    assert.match(
      ready.message ?? '',
      /^0\/2 replicas warm; fleet default: the data volume of 2\/2 replicas cannot hold this mirror, [\d.]+ MiB missing of the [\d.]+ MiB it needs \(data budget 3\.6 MiB\); raise the fleet's data volume size \(chart: fleet\.dataVolume\.size\); pod gitmirror-cache-\S+: restore of \S+\/big needs [\d.]+ MiB: the data budget is 3\.6 MiB, .*; [\d.]+ MiB missing$/,
    );

    const pods = (await watchPods()).filter((p) => !p.metadata.deletionTimestamp);
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      // The gate opened on the warm-up timeout (onTimeout: Open), the pod serves what it has.
      assert.ok(isReady(pod), `${pod.metadata.name} is not Ready`);
      assert.equal(condition(pod, WARM_GATE)?.reason, 'WarmupTimeout');
      const mirror = (await sidecarMirrors(env, pod.metadata.name)).find((m) => m.id === env.mirrorId(REPO));
      assert.equal(mirror?.state, 'failed');
      assert.equal(mirror?.restore.bytesDone, 0, 'not a byte of the snapshot downloaded');
      assert.equal(mirror?.disk?.shortfall?.limitBytes, budget);
      assert.ok((mirror?.disk?.shortfall?.neededBytes ?? 0) > REPO_MIB * MiB);
      const shortfall = await sidecarMetric(
        env,
        pod.metadata.name,
        'gitmirror_mirror_storage_shortfall_bytes',
        {
          mirror: env.mirrorId(REPO),
        },
      );
      assert.ok(shortfall > 2 * MiB, `shortfall metric ${shortfall}`);
    }
    // Longer than the kubelet's 10 s housekeeping: still nothing evicted or restarted.
    await new Promise((r) => setTimeout(r, 15_000));
    await watchPods();
    assertNoneEvictedOrRestarted();
  });

  it('raising the size limit (helm upgrade) makes it Ready on every replica', async () => {
    await env.upgrade({ fleet: { dataVolume: { size: '64Mi' } } });
    await waitFor(
      'Ready on 2/2 replicas, the rollout done',
      async () => {
        // The GitMirror can be Ready on the two new pods before the Deployment has deleted an
        // old one (4Mi, never warm, its gate opened on the timeout): wait until only two are left.
        const left = (await watchPods()).filter((p) => !p.metadata.deletionTimestamp);
        const gm = await getGitMirror(env, REPO);
        const c = gm.status?.conditions?.find((x) => x.type === 'Ready');
        const done = c?.status === 'True' && gm.status?.replicas?.warm === 2 && left.length === 2;
        return done ? gm : undefined;
      },
      { timeoutMs: 400_000, intervalMs: 1000 },
    );
    const pods = (await watchPods()).filter((p) => !p.metadata.deletionTimestamp && isReady(p));
    const head = await upstreamHead(env, REPO);
    for (const pod of pods) {
      assert.equal(condition(pod, WARM_GATE)?.reason, 'Warm');
      assert.equal(await cloneThrough(env, pod.metadata.name, REPO), head);
    }
    assertNoneEvictedOrRestarted();
  });

  it('the limit is real: a pod whose data volume passes it is evicted by the kubelet', async (t) => {
    const kubelet = env.cluster.kubelet;
    if (!kubelet) return t.skip('needs the suite’s own kubelet to write into a pod volume');
    const [pod] = (await fleetPods(env)).filter((p) => isReady(p));
    const worker = kubelet.pods().find((w) => w.name === `${NAMESPACE}/${pod!.metadata.name}`)!;
    // What a sidecar without a budget would do: write past the volume's 64Mi.
    await writeFile(join(worker.dir, 'volumes', 'data', 'filler'), Buffer.alloc(65 * MiB, 1));
    const evicted = await waitFor(
      'the pod evicted',
      async () => {
        const now = (await fleetPods(env)).find((p) => p.metadata.uid === pod!.metadata.uid);
        return now?.status?.reason === 'Evicted' ? now : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(evicted.status?.phase, 'Failed');
    assert.match(evicted.status?.message ?? '', /Usage of EmptyDir volume "data" exceeds the limit "64Mi"/);
  });
});
