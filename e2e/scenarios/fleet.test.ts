import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { CommandError } from '../cluster/processes.ts';
import {
  BUCKET,
  type Environment,
  NAMESPACE,
  STORE_PREFIX,
  startEnvironment,
} from './support/environment.ts';
import {
  applyGitMirror,
  cloneThrough,
  condition,
  fleetPods,
  getGitMirror,
  isReady,
  kubectlJson,
  sidecarMetric,
  sidecarMirrors,
  upstreamHead,
  WARM_GATE,
} from './support/gitmirror.ts';
import {
  cloneContinuously,
  FLEET_SERVICE,
  readyEndpoints,
  watchReadyImpliesWarm,
} from './support/observers.ts';
import { waitFor } from './support/poll.ts';

/**
 * The fleet's life as a user drives it, one step after another on one cluster: install the
 * chart, add mirrors, get a snapshot published, scale up from it, roll the fleet, remove a
 * mirror. Each step starts from where the previous one left the fleet.
 */

const REPOS = ['repo-a', 'repo-b'];
const WARM_TIMEOUT_MS = 240_000;

describe('a gitmirror fleet on Kubernetes', { timeout: 1_800_000 }, () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment(REPOS);
  });

  after(async () => {
    await env?.stop();
  });

  it('installs with helm; two GitMirrors become Ready and warm on a fleet of 2; clones work', async () => {
    await env.install();
    const pods = await fleetPods(env);
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      // helm --wait returned, so the pods are Ready: with no GitMirror yet the gate opens at once.
      assert.ok(isReady(pod), `${pod.metadata.name} is not Ready after helm --wait`);
      assert.equal(condition(pod, WARM_GATE)?.reason, 'NoMirrors');
    }

    // fetchInterval 1m: the operator re-reads the sidecars on that period once all are warm,
    // which is when status.latestSnapshot picks up a publish (5 min with the default 5m).
    for (const repo of REPOS) await applyGitMirror(env, repo, env.upstreamUrl(repo), { fetchInterval: '1m' });
    for (const repo of REPOS) {
      await env.cluster.kubectl(
        ['wait', '--for=condition=Ready', `gitmirror/${repo}`, '-n', NAMESPACE, '--timeout=240s'],
        { timeoutMs: WARM_TIMEOUT_MS + 10_000 },
      );
    }
    for (const repo of REPOS) {
      await waitFor(
        `${repo}: 2 of 2 replicas warm`,
        async () => {
          const replicas = (await getGitMirror(env, repo)).status?.replicas;
          return replicas?.total === 2 && replicas.warm === 2;
        },
        { timeoutMs: WARM_TIMEOUT_MS },
      );
    }
    for (const pod of pods) {
      const mirrors = await sidecarMirrors(env, pod.metadata.name);
      for (const repo of REPOS) {
        const mirror = mirrors.find((m) => m.id === env.mirrorId(repo));
        assert.ok(mirror?.ready, `${repo} is not ready on ${pod.metadata.name}`);
        assert.equal(await cloneThrough(env, pod.metadata.name, repo), await upstreamHead(env, repo));
      }
    }
    // Every pod serves through the pack cache, its hook run by the image's /bin/sh on a read-only
    // root, with the chart's budget (a tenth of the default 20Gi): the same clone again comes
    // from disk, and no pack-objects ran for it.
    for (const pod of pods) {
      const name = pod.metadata.name;
      const metric = (series: string, labels: Record<string, string> = {}) =>
        sidecarMetric(env, name, `gitmirror_pack_cache_${series}`, labels);
      assert.equal(await metric('budget_bytes'), 2 * 2 ** 30, name);
      const [hits, generations] = [
        await metric('requests_total', { result: 'hit' }),
        await metric('generations_total', { outcome: 'success' }),
      ];
      assert.ok(generations >= REPOS.length, `${name}: ${generations} generations`);
      assert.equal(await cloneThrough(env, name, REPOS[0]!), await upstreamHead(env, REPOS[0]!));
      assert.equal(await metric('requests_total', { result: 'hit' }), hits + 1, `${name}: a hit`);
      assert.equal(await metric('generations_total', { outcome: 'success' }), generations, name);
    }
  });

  it('has exactly one replica publish each snapshot to S3, named by status.latestSnapshot', async () => {
    for (const repo of REPOS) {
      const snapshot = await waitFor(
        `${repo}: status.latestSnapshot`,
        async () => (await getGitMirror(env, repo)).status?.latestSnapshot,
        { timeoutMs: WARM_TIMEOUT_MS },
      );
      // Keys in status and manifests are relative to the store's prefix (the chart's `gitmirror`).
      const prefix = `${STORE_PREFIX}/${env.mirrorId(repo)}/`;
      const listed = await env.s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
      const keys = (listed.Contents ?? []).map((o) => o.Key!);
      const manifest = await env.s3.client.send(
        new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}latest.json` }),
      );
      const latest = JSON.parse(await manifest.Body!.transformToString()) as { key: string; commit: string };
      assert.equal(latest.key, snapshot.key, 'status.latestSnapshot is not what latest.json names');
      assert.ok(keys.includes(`${STORE_PREFIX}/${snapshot.key}`), `${snapshot.key} is not in S3: ${keys}`);
      // Refs have not moved since, so one publish and no second archive from anyone.
      assert.equal(keys.filter((k) => k.endsWith('.tar.zst')).length, 1, `archives: ${keys.join(', ')}`);
      assert.equal(snapshot.commit, await upstreamHead(env, repo));

      const writers: string[] = [];
      const publishers: string[] = [];
      for (const pod of await fleetPods(env)) {
        const mirror = (await sidecarMirrors(env, pod.metadata.name)).find(
          (m) => m.id === env.mirrorId(repo),
        );
        if (mirror?.snapshot.writer) writers.push(pod.metadata.name);
        if (mirror?.snapshot.lastAttemptAt) publishers.push(pod.metadata.name);
      }
      assert.equal(writers.length, 1, `${repo}: writers ${writers.join(', ')}`);
      assert.deepEqual(publishers, writers, `${repo}: a non-writer attempted a snapshot`);
      assert.equal((await getGitMirror(env, repo)).status?.writer, writers[0]);
    }
  });

  it('scales 2 → 4: new pods restore from the snapshot and turn Ready only once warm', async (t) => {
    const before = new Set((await fleetPods(env)).map((p) => p.metadata.name));
    const snapshots = new Map<string, string>();
    for (const repo of REPOS)
      snapshots.set(repo, (await getGitMirror(env, repo)).status!.latestSnapshot!.key);
    const gate = watchReadyImpliesWarm(env, () => REPOS.map((r) => env.mirrorId(r)));
    await env.upgrade({ fleet: { replicas: 4 } });
    const added = await waitFor(
      '4 Ready fleet pods',
      async () => {
        const pods = await fleetPods(env);
        return pods.length === 4 && pods.every(isReady) && pods.filter((p) => !before.has(p.metadata.name));
      },
      { timeoutMs: WARM_TIMEOUT_MS },
    );
    // Keep sampling a little after the last pod turned Ready, then judge.
    await sleep(2000);
    const report = await gate.stop();
    t.diagnostic(`${report.samples} samples, ${report.errors} failed, held back: ${[...report.seenUnready]}`);
    assert.deepEqual(report.violations, []);
    assert.ok(report.samples >= 10, `only ${report.samples} samples (${report.errors} failed)`);
    assert.equal(added.length, 2);
    for (const pod of added) {
      const name = pod.metadata.name;
      assert.ok(report.seenUnready.has(name), `${name} was never seen held back by its gate`);
      const warm = condition(pod, WARM_GATE);
      assert.equal(warm?.status, 'True');
      assert.equal(warm?.reason, 'Warm');
      const ready = condition(pod, 'Ready')!;
      assert.ok(Date.parse(ready.lastTransitionTime!) >= Date.parse(warm!.lastTransitionTime!));
      const mirrors = await sidecarMirrors(env, name);
      for (const repo of REPOS) {
        const mirror = mirrors.find((m) => m.id === env.mirrorId(repo))!;
        assert.equal(
          mirror.restore.source,
          'snapshot',
          `${repo} on ${name}: ${JSON.stringify(mirror.restore)}`,
        );
        assert.equal(mirror.restore.key, snapshots.get(repo));
      }
      assert.equal(
        await sidecarMetric(env, name, 'gitmirror_git_operations_total', { operation: 'clone' }),
        0,
      );
      // The operator's Event (events.k8s.io, created under the chart's RBAC) on the pod.
      const events = await kubectlJson<{ items: { reason: string }[] }>(env, [
        'get',
        'events',
        '-n',
        NAMESPACE,
        '--field-selector',
        `involvedObject.name=${name},reason=Warm`,
      ]);
      assert.equal(events.items.length, 1, `${name}: Warm events ${JSON.stringify(events.items)}`);
    }
    const endpoints = new Set((await readyEndpoints(env)).map((e) => e.pod));
    for (const pod of added)
      assert.ok(endpoints.has(pod.metadata.name), `${pod.metadata.name} not in the Service`);
  });

  it('rolls the fleet with maxUnavailable 0: old pods stay until new ones are warm; clients never fail', async (t) => {
    const old = new Set((await fleetPods(env)).map((p) => p.metadata.name));
    const gate = watchReadyImpliesWarm(env, () => REPOS.map((r) => env.mirrorId(r)));
    const clients = cloneContinuously(env, REPOS);
    await env.upgrade({ fleet: { replicas: 4, podAnnotations: { 'e2e.gitmirror.dev/rollout': '2' } } });
    await env.cluster.kubectl(
      ['rollout', 'status', `deployment/${FLEET_SERVICE}`, '-n', NAMESPACE, '--timeout=600s'],
      { timeoutMs: 620_000 },
    );
    await waitFor('the old pods to be gone', async () => {
      const pods = await fleetPods(env);
      return pods.length === 4 && pods.every((p) => !old.has(p.metadata.name) && isReady(p));
    });
    const [report, cloned] = [await gate.stop(), await clients.stop()];
    t.diagnostic(`${report.samples} samples, fewest Ready ${report.minReady}, ${cloned.ok} clones`);
    assert.deepEqual(report.violations, []);
    assert.equal(report.minReady, 4, 'fewer than 4 Ready pods during the rollout');
    assert.deepEqual(cloned.failures, []);
    assert.ok(cloned.ok >= 10, `only ${cloned.ok} clones during the rollout`);
    for (const pod of await fleetPods(env)) {
      for (const mirror of await sidecarMirrors(env, pod.metadata.name)) {
        assert.equal(mirror.restore.source, 'snapshot', `${mirror.id} on ${pod.metadata.name}`);
      }
    }
  });

  it('removes a deleted GitMirror from every sidecar and lets the object go', async () => {
    const [kept, removed] = REPOS as [string, string];
    await env.cluster.kubectl(['delete', 'gitmirror', removed, '-n', NAMESPACE, '--timeout=120s'], {
      timeoutMs: 130_000,
    });
    const gone = await env.cluster.kubectl(['get', 'gitmirror', removed, '-n', NAMESPACE]).then(
      () => false,
      (err: CommandError) => /NotFound/.test(err.stderr),
    );
    assert.ok(gone, 'the GitMirror still exists after kubectl delete returned');
    for (const pod of await fleetPods(env)) {
      const ids = (await sidecarMirrors(env, pod.metadata.name)).map((m) => m.id);
      assert.ok(!ids.includes(env.mirrorId(removed)), `${pod.metadata.name} still holds ${removed}`);
      assert.ok(ids.includes(env.mirrorId(kept)), `${pod.metadata.name} lost ${kept}`);
      const local = env.cluster.kubelet?.pods().find((w) => w.name === `${NAMESPACE}/${pod.metadata.name}`);
      if (local) {
        const dir = join(local.dir, 'volumes', 'data', 'mirrors', `${env.mirrorId(removed)}.git`);
        assert.equal(existsSync(dir), false, `${dir} is still on disk`);
      }
    }
  });
});
