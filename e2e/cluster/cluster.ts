import type { TestKubelet } from '../kubelet/kubelet.ts';
import type { ApiServerRestart, RestartOptions } from './control-plane-processes.ts';
import type { KubeClient } from './kube-client.ts';
import { type RunResult, run } from './processes.ts';

/**
 * What a scenario needs from a cluster, whichever kind it is: the suite's own control plane
 * with the test kubelet (`local`), or an existing cluster reached through a kubeconfig
 * (`existing`: kind, minikube, ...) running a built image.
 */
export interface E2eCluster {
  kind: 'local' | 'existing';
  kubeconfig: string;
  /** Where host-side servers (git upstream, S3) listen so that pods can reach them. */
  hostAddress: string;
  /** The chart's image values for this cluster. */
  image: { repository: string; tag: string; pullPolicy: string };
  kubectl(args: string[], options?: { input?: string; timeoutMs?: number }): Promise<RunResult>;
  helm(args: string[], options?: { timeoutMs?: number }): Promise<RunResult>;
  /** A base URL (`http://host:port`) that reaches `port` of a pod from the test process. */
  podUrl(namespace: string, pod: string, port: number): Promise<string>;
  /** The local cluster's admin client, in process (for samplers too frequent for kubectl); absent otherwise. */
  client?: KubeClient;
  /** The local cluster's kubelet (for log files and process checks); absent otherwise. */
  kubelet?: TestKubelet;
  /** The local cluster's: stop kube-apiserver and start it again (control-plane-processes.ts). */
  restartApiServer?(options: RestartOptions): Promise<ApiServerRestart>;
  /** Dir for logs worth keeping when a test fails. */
  dir: string;
  stop(): Promise<void>;
}

export interface ToolPaths {
  kubectl: string;
  helm: string;
}

export function toolRunners(
  tools: ToolPaths,
  kubeconfig: string,
  helmHome: string,
): Pick<E2eCluster, 'kubectl' | 'helm'> {
  const env = {
    PATH: process.env.PATH,
    HOME: helmHome,
    KUBECONFIG: kubeconfig,
    HELM_CACHE_HOME: `${helmHome}/cache`,
    HELM_CONFIG_HOME: `${helmHome}/config`,
    HELM_DATA_HOME: `${helmHome}/data`,
  };
  return {
    kubectl: (args, options = {}) =>
      run(tools.kubectl, args, { env, input: options.input, timeoutMs: options.timeoutMs ?? 60_000 }),
    helm: (args, options = {}) => run(tools.helm, args, { env, timeoutMs: options.timeoutMs ?? 300_000 }),
  };
}

export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with \`npm run e2e\``);
  return value;
}
