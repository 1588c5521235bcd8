import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MirrorStatus } from '../../core/admin-api.ts';
import { git } from '../../testing/git.ts';
import { addCommit } from '../../testing/git-repos.ts';
import type { UpstreamRequestRecord } from '../../testing/git-upstream.ts';
import { type Environment, NAMESPACE, startEnvironment } from './support/environment.ts';
import { applyGitMirror, fleetPods, getGitMirror, sidecarMirrors } from './support/gitmirror.ts';
import { waitFor } from './support/poll.ts';

/**
 * Upstream requests per minute for a fleet of 4 and then of 1 replica carrying the same
 * mirrors under the same load, on the real control plane with the real operator, sidecars
 * and a git upstream that counts every request it gets. The load: the mirrors' periodic fetch
 * (fetchInterval 30s, the CRD's minimum), a push to one of them every 20 s, and a client
 * asking a replica for a mirror's refs (`git ls-remote`, which makes the replica check
 * upstream's refs when its last look is older than GITMIRROR_REF_CHECK_INTERVAL) every second,
 * round robin over replicas and mirrors. The README's "Budgets" section quotes the figures.
 */

const REPOS = ['load-a', 'load-b', 'load-c'];
const WINDOW_MS = 120_000;
const PUSH_EVERY_MS = 20_000;
const ASK_EVERY_MS = 1_000;
const WARM_TIMEOUT_MS = 300_000;

interface Load {
  replicas: number;
  requests: number;
  perMinute: number;
  /** By kind: ref checks (ls-remote), fetch negotiations, packs sent, GET info/refs. */
  kinds: Record<string, number>;
  clientAsks: number;
  clientFailures: number;
}

describe('upstream load of a fleet of 4 and of 1 with the same mirrors', { timeout: 2_400_000 }, () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment(REPOS);
    await env.install({ fleet: { replicas: 4 } });
    for (const repo of REPOS)
      await applyGitMirror(env, repo, env.upstreamUrl(repo), { fetchInterval: '30s' });
  });

  after(async () => {
    await env?.stop();
  });

  it('a fleet of 4 asks upstream about as often as a fleet of 1', async (t) => {
    await settled(env, 4);
    const four = await measure(env, 4);
    t.diagnostic(summary(four));
    await env.upgrade({ fleet: { replicas: 1 } });
    await settled(env, 1);
    const one = await measure(env, 1);
    t.diagnostic(summary(one));
    for (const load of [four, one]) assert.equal(load.clientFailures, 0, `${load.replicas}: failed asks`);
    // Without the writer's lead each replica would fetch on its interval and check on demand
    // by itself: about four times the periodic traffic. With it the fleet costs what one costs.
    assert.ok(
      four.perMinute <= one.perMinute * 1.25 + 10,
      `fleet of 4: ${four.perMinute}/min, fleet of 1: ${one.perMinute}/min`,
    );
  });
});

function summary(load: Load): string {
  const kinds = Object.entries(load.kinds)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return `fleet of ${load.replicas}: ${load.requests} upstream requests in ${WINDOW_MS / 1000} s = ${load.perMinute}/min (${kinds}); ${load.clientAsks} client ref requests`;
}

/**
 * Waits until the fleet is `replicas` pods, every mirror warm on each, and the operator's
 * roles are in place: one writer per mirror and, with more than one pod, its followers.
 */
async function settled(env: Environment, replicas: number): Promise<void> {
  await waitFor(
    `a fleet of ${replicas} with writer and followers in place`,
    async () => {
      const pods = (await fleetPods(env)).filter((p) => !p.metadata.deletionTimestamp);
      if (pods.length !== replicas) return false;
      for (const repo of REPOS) {
        const replicasStatus = (await getGitMirror(env, repo)).status?.replicas;
        if (replicasStatus?.warm !== replicas || replicasStatus.total !== replicas) return false;
      }
      const mirrors: MirrorStatus[] = [];
      for (const pod of pods) mirrors.push(...(await sidecarMirrors(env, pod.metadata.name)));
      return REPOS.every((repo) => {
        const held = mirrors.filter((m) => m.id === env.mirrorId(repo) && m.ready);
        const writers = held.filter((m) => m.snapshot.writer);
        const roles = held.map((m) => m.fleet?.role).sort();
        const expected =
          replicas === 1 ? ['alone'] : ['writer', ...Array(replicas - 1).fill('follower')].sort();
        return held.length === replicas && writers.length === 1 && roles.join() === expected.join();
      });
    },
    { timeoutMs: WARM_TIMEOUT_MS, intervalMs: 1_000 },
  );
  // Warm-ups and the writer's first snapshot are over: what follows is the steady state.
  await sleep(10_000);
}

async function measure(env: Environment, replicas: number): Promise<Load> {
  const pods = (await fleetPods(env))
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => p.metadata.name);
  const bases = await Promise.all(pods.map((pod) => env.cluster.podUrl(NAMESPACE, pod, 8080)));
  const startedAt = Date.now();
  const deadline = startedAt + WINDOW_MS;
  const from = env.upstream.requests.length;
  let clientAsks = 0;
  let clientFailures = 0;
  const pushing = (async () => {
    for (let i = 0; Date.now() + PUSH_EVERY_MS <= deadline; i++) {
      await sleep(PUSH_EVERY_MS);
      const repo = env.repos.get(REPOS[i % REPOS.length]!)!;
      await addCommit(repo.work, `load-${i}.txt`, `push ${i} at ${Date.now()}\n`);
      await git(['push', '--quiet', 'origin', 'HEAD:main'], { cwd: repo.work });
    }
  })();
  const asking = (async () => {
    const asks: Promise<void>[] = [];
    for (let i = 0; Date.now() < deadline; i++) {
      const base = bases[i % bases.length]!;
      const repo = REPOS[Math.floor(i / bases.length) % REPOS.length]!;
      clientAsks++;
      asks.push(
        git(['ls-remote', `${base}/git/${env.mirrorId(repo)}.git`, 'refs/heads/main'], {
          timeoutMs: 60_000,
        }).then(
          () => {},
          () => {
            clientFailures++;
          },
        ),
      );
      await sleep(ASK_EVERY_MS);
    }
    await Promise.all(asks);
  })();
  await Promise.all([pushing, asking]);
  const seen = env.upstream.requests.slice(from).filter((r) => r.at >= startedAt && r.at < deadline);
  return {
    replicas,
    requests: seen.length,
    perMinute: Math.round((seen.length * 60_000) / WINDOW_MS),
    kinds: countKinds(seen),
    clientAsks,
    clientFailures,
  };
}

function countKinds(requests: UpstreamRequestRecord[]): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const r of requests) {
    const kind =
      r.method === 'GET'
        ? 'info/refs'
        : r.command === 'ls-refs'
          ? r.refPrefixes
            ? 'fetch negotiation'
            : 'ref check'
          : r.command === 'fetch'
            ? 'pack'
            : (r.command ?? 'other');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}
