import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type E2eCluster, requiredEnv, toolRunners } from './cluster.ts';

/**
 * Existing-cluster mode (kind, minikube, a dev cluster): no control plane and no test kubelet;
 * the chart runs the image named by GITMIRROR_E2E_IMAGE, which the cluster must be able to
 * pull (for kind: `kind load docker-image`). Pods are reached through `kubectl port-forward`,
 * and the suite's git upstream and S3 server listen on GITMIRROR_E2E_HOST_ADDRESS, an address
 * of this machine that the cluster's pods can reach (for kind, the docker network gateway).
 */

export async function startExistingCluster(): Promise<E2eCluster> {
  const kubeconfig = requiredEnv('GITMIRROR_E2E_KUBECONFIG');
  const image = requiredEnv('GITMIRROR_E2E_IMAGE');
  const hostAddress = requiredEnv('GITMIRROR_E2E_HOST_ADDRESS');
  const at = image.lastIndexOf(':');
  if (at <= image.lastIndexOf('/')) throw new Error('GITMIRROR_E2E_IMAGE must be repository:tag');
  const dir = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-existing-'));
  const tools = { kubectl: requiredEnv('GITMIRROR_E2E_KUBECTL'), helm: requiredEnv('GITMIRROR_E2E_HELM') };
  const forwards: ChildProcess[] = [];
  const runners = toolRunners(tools, kubeconfig, dir);
  return {
    kind: 'existing',
    kubeconfig,
    hostAddress,
    image: { repository: image.slice(0, at), tag: image.slice(at + 1), pullPolicy: 'IfNotPresent' },
    ...runners,
    podUrl: async (namespace, pod, port) => {
      const { child, url } = await portForward(tools.kubectl, kubeconfig, namespace, pod, port);
      forwards.push(child);
      return url;
    },
    dir,
    stop: async () => {
      for (const child of forwards) child.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function portForward(
  kubectl: string,
  kubeconfig: string,
  namespace: string,
  pod: string,
  port: number,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(kubectl, ['port-forward', '-n', namespace, `pod/${pod}`, `:${port}`], {
    env: { ...process.env, KUBECONFIG: kubeconfig },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kubectl port-forward ${namespace}/${pod}:${port} did not start`));
    }, 30_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      const match = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(chunk.toString());
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: `http://127.0.0.1:${match[1]}` });
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`kubectl port-forward ${namespace}/${pod}:${port} exited`));
    });
  });
}
