import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from '../cluster/local-cluster.ts';
import { type RunResult, run } from '../cluster/processes.ts';
import { type AllowedSources, foreignMounts, parseMountinfo } from '../kubelet/pod-filesystem.ts';
import { type Environment, NAMESPACE, startEnvironment } from './support/environment.ts';
import { applyGitMirror, fleetPods, getGitMirror, isReady, sidecarMirrors } from './support/gitmirror.ts';
import { waitFor } from './support/poll.ts';

/**
 * The chart's pods as the test kubelet runs them, from the image `npm run image` built: each
 * container's root is that image (with its git, its production node_modules, its compile cache
 * and its user), and nothing of this machine is visible in it but the pod's own volumes. And
 * how long a fleet pod of that image takes from start to Ready when it restores a snapshot.
 */

const REPO = 'image-repo';
const WARM_TIMEOUT_MS = 240_000;

describe('pods run from the built image', { timeout: 1_200_000 }, () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment([REPO]);
    await env.install();
    // fetchInterval 1m: the operator sees the writer's snapshot within a minute.
    await applyGitMirror(env, REPO, env.upstreamUrl(REPO), { fetchInterval: '1m' });
    await env.cluster.kubectl(
      ['wait', '--for=condition=Ready', `gitmirror/${REPO}`, '-n', NAMESPACE, '--timeout=240s'],
      { timeoutMs: WARM_TIMEOUT_MS + 10_000 },
    );
  });

  after(async () => {
    await env?.stop();
  });

  it('shows every container the image and its volumes, and nothing else of the host', async (t) => {
    const kubelet = env.cluster.kubelet;
    if (!kubelet) return t.skip('needs the suite’s own kubelet');
    const hostMounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
    const imageGit = (await run('chroot', [kubelet.image.rootfs, 'git', '--version'])).stdout.trim();
    // What a leak would show: the checkout has dev dependencies, the image must not.
    assert.ok(existsSync(`${REPO_ROOT}/node_modules/typescript`));
    let checked = 0;
    for (const worker of kubelet.pods().filter((w) => w.name.startsWith(`${NAMESPACE}/`))) {
      for (const name of worker.containerNames()) {
        const pid = worker.container(name)?.initPid();
        assert.ok(pid, `${worker.name}/${name} is not running`);
        const where = `${worker.name}/${name}`;
        const mounts = parseMountinfo(await readFile(`/proc/${pid}/mountinfo`, 'utf8'));
        const allowed: AllowedSources = { imageRootfs: kubelet.image.rootfs, podDir: worker.dir, hostMounts };
        assert.deepEqual(foreignMounts(mounts, allowed), [], `${where} sees the host`);
        const root = `/proc/${pid}/root`;
        assert.ok(
          !existsSync(`${root}/app/node_modules/typescript`),
          `${where} has the checkout's TypeScript`,
        );
        assert.ok(!existsSync(`${root}${REPO_ROOT}`), `${where} sees the checkout`);
        assert.ok(
          existsSync(`${root}/app/node_modules/zstd-napi`),
          `${where} lacks the image's node_modules`,
        );
        const inside = (command: string[]): Promise<RunResult> =>
          run('nsenter', ['-t', String(pid), '-m', '-p', '-r', '-w', '--', ...command], {
            env: { PATH: kubelet.image.config.env.PATH },
          });
        assert.equal((await inside(['git', '--version'])).stdout.trim(), imageGit);
        assert.match((await inside(['node', '--version'])).stdout, /^v24\./);
        assert.equal((await readFile(`/proc/${pid}/status`, 'utf8')).match(/^Uid:\s+(\d+)/m)?.[1], '10001');
        checked++;
      }
    }
    assert.ok(checked >= 4, `only ${checked} containers (2 operators, 2 sidecars expected)`);
    t.diagnostic(`${checked} containers checked; the image's git: ${imageGit}`);
  });

  it('starts a replacement fleet pod from the image and a snapshot, and measures start to Ready', async (t) => {
    const kubelet = env.cluster.kubelet;
    if (!kubelet) return t.skip('needs the suite’s own kubelet to see the container start');
    await waitFor(
      'a published snapshot',
      async () => (await getGitMirror(env, REPO)).status?.latestSnapshot,
      {
        timeoutMs: WARM_TIMEOUT_MS,
      },
    );
    const writer = (await getGitMirror(env, REPO)).status?.writer;
    const before = await fleetPods(env);
    const victim = before.find((p) => p.metadata.name !== writer) ?? before[0]!;
    await env.cluster.kubectl(['delete', 'pod', victim.metadata.name, '-n', NAMESPACE, '--wait=false']);
    const seen = new Set(before.map((p) => p.metadata.name));
    const created = Date.now();
    let started: number | undefined;
    let name = '';
    await waitFor(
      'the replacement pod to be Ready',
      async () => {
        const fresh = (await fleetPods(env)).find((p) => !seen.has(p.metadata.name));
        if (!fresh) return false;
        name = fresh.metadata.name;
        const worker = kubelet.pods().find((w) => w.name === `${NAMESPACE}/${name}`);
        if (started === undefined && worker?.container('gitmirror')?.initPid()) started = Date.now();
        return isReady(fresh);
      },
      { timeoutMs: WARM_TIMEOUT_MS, intervalMs: 100 },
    );
    const ready = Date.now();
    const restore = (await sidecarMirrors(env, name)).find((m) => m.id === env.mirrorId(REPO))?.restore;
    assert.equal(restore?.source, 'snapshot', JSON.stringify(restore));
    const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    t.diagnostic(
      `replacement ${name}: container start → Ready ${seconds(ready - started!)}, delete → Ready ${seconds(ready - created)} (restored from the snapshot)`,
    );
  });
});
