import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { imageCacheDir } from '../../image/build.ts';
import { waitFor } from '../../testing/wait.ts';
import { loadImage } from '../kubelet/image.ts';
import { nodeLabels, TestKubelet } from '../kubelet/kubelet.ts';
import { Cleanup } from './cleanup.ts';
import { type E2eCluster, requiredEnv, toolRunners } from './cluster.ts';
import { startControlPlane } from './control-plane.ts';
import { requireRoot } from './host-prerequisites.ts';
import { KubeClient } from './kube-client.ts';
import { PodNetwork } from './network.ts';
import { TestScheduler } from './scheduler.ts';
import { RUN_DIR_PREFIX, sweepStale } from './stale.ts';

/**
 * The suite's own cluster: pod network, etcd, kube-apiserver, kube-controller-manager, the
 * test kubelet and scheduler, torn down by `stop()` or, if the test process dies first, by the exit and
 * signal handlers in cleanup.ts.
 */

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const NODE_NAME = 'e2e-node';
const READY_TIMEOUT_MS = 120_000;

export async function startLocalCluster(): Promise<E2eCluster> {
  requireRoot();
  const tools = {
    etcd: requiredEnv('GITMIRROR_E2E_ETCD'),
    kubeApiserver: requiredEnv('GITMIRROR_E2E_KUBE_APISERVER'),
    kubeControllerManager: requiredEnv('GITMIRROR_E2E_KUBE_CONTROLLER_MANAGER'),
    kubectl: requiredEnv('GITMIRROR_E2E_KUBECTL'),
    helm: requiredEnv('GITMIRROR_E2E_HELM'),
  };
  // The image `npm run image` built (run.ts makes sure it is current and names it here).
  const image = await loadImage(requiredEnv('GITMIRROR_E2E_LOCAL_IMAGE'), imageCacheDir());
  const swept = sweepStale();
  if (swept.length > 0) console.error(`e2e: removed leftovers of dead runs: ${swept.join(', ')}`);
  const cleanup = new Cleanup();
  const dir = await mkdtemp(join(tmpdir(), `${RUN_DIR_PREFIX}${process.pid}-`));
  const keep = Boolean(process.env.GITMIRROR_E2E_KEEP);
  cleanup.add(
    'run dir',
    async () => {
      if (!keep) await rm(dir, { recursive: true, force: true });
    },
    () => {
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  );
  try {
    const network = await PodNetwork.create();
    cleanup.add(
      'pod network',
      () => network.destroy(),
      () => network.destroySync(),
    );
    const controlPlane = await startControlPlane(dir, network.hostIp, tools, cleanup);
    const kubelet = new TestKubelet({
      nodeName: NODE_NAME,
      node: await controlPlane.identity(`system:node:${NODE_NAME}`, ['system:nodes']),
      network,
      image,
      apiserver: { host: controlPlane.apiserverHost, port: controlPlane.apiserverPort },
      runDir: dir,
      log: (message) => console.error(`kubelet: ${message}`),
    });
    // Registered before start: a failing start must still stop the watches it began.
    cleanup.add('kubelet', () => kubelet.stop());
    await kubelet.start();
    const scheduler = new TestScheduler({
      identity: await controlPlane.identity('system:kube-scheduler'),
      node: { name: NODE_NAME, labels: nodeLabels(NODE_NAME) },
      log: (message) => console.error(`scheduler: ${message}`),
    });
    cleanup.add('scheduler', async () => scheduler.stop());
    scheduler.start();
    const admin = new KubeClient(await controlPlane.identity('e2e-admin', ['system:masters']));
    cleanup.add('admin client', async () => admin.close());
    await waitForControllers(admin);
    const helmHome = join(dir, 'helm');
    await mkdir(helmHome, { recursive: true });
    return {
      kind: 'local',
      kubeconfig: controlPlane.adminKubeconfig,
      hostAddress: network.hostIp,
      image: chartImage(image.ref),
      ...toolRunners(tools, controlPlane.adminKubeconfig, helmHome),
      podUrl: async (namespace, pod, port) => `http://${await podIp(admin, namespace, pod)}:${port}`,
      client: admin,
      kubelet,
      restartApiServer: (options) => controlPlane.restartApiServer(options),
      dir,
      stop: () => cleanup.run(),
    };
  } catch (err) {
    await cleanup.run().catch((e) => console.error(`e2e: ${(e as Error).message}`));
    throw err;
  }
}

/** The chart's image values for a local ref: `localhost/gitmirror:0.1.0`, never pulled. */
function chartImage(ref: string): E2eCluster['image'] {
  const at = ref.lastIndexOf(':');
  return { repository: ref.slice(0, at), tag: ref.slice(at + 1), pullPolicy: 'Never' };
}

async function podIp(client: KubeClient, namespace: string, name: string): Promise<string> {
  const pod = await client.get<{ status?: { podIP?: string } }>(
    `/api/v1/namespaces/${namespace}/pods/${name}`,
  );
  if (!pod.status?.podIP) throw new Error(`pod ${namespace}/${name} has no IP yet`);
  return pod.status.podIP;
}

/**
 * The controller manager is up once it has published the cluster CA into `default` and
 * created the namespace's default ServiceAccount (pods cannot be admitted before either).
 */
async function waitForControllers(client: KubeClient): Promise<void> {
  await waitFor(
    'kube-controller-manager to start its controllers',
    async () => {
      await client.get('/api/v1/namespaces/default/configmaps/kube-root-ca.crt');
      await client.get('/api/v1/namespaces/default/serviceaccounts/default');
      return true;
    },
    { timeoutMs: READY_TIMEOUT_MS, intervalMs: 500 },
  );
}
