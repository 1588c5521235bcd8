import { KubeConfig } from '@kubernetes/client-node';
import { OperatorError } from '../errors/operator-error.ts';

/**
 * In a pod: the service account. Elsewhere: the given kubeconfig file, else $KUBECONFIG or
 * ~/.kube/config. Fails instead of falling back to http://localhost:8080 as loadFromDefault does.
 */
export function loadKubeConfig(kubeconfigPath: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else if (process.env.KUBERNETES_SERVICE_HOST && !process.env.KUBECONFIG) kc.loadFromCluster();
  else kc.loadFromDefault();
  const cluster = kc.getCurrentCluster();
  if (
    !cluster ||
    (!kubeconfigPath && !process.env.KUBECONFIG && cluster.server === 'http://localhost:8080')
  ) {
    throw new OperatorError(
      'CONFIG_INVALID',
      'no Kubernetes cluster found: run in a pod, set KUBECONFIG or pass --kubeconfig',
    );
  }
  return kc;
}
