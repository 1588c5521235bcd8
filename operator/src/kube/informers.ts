import { CoreV1Api, CustomObjectsApi, type KubeConfig, makeInformer } from '@kubernetes/client-node';
import { CACHE_LABEL, type GitMirror, GROUP, PLURAL, VERSION } from '../api/gitmirror.ts';
import type { Pod } from '../api/kubernetes.ts';
import type { InformerLike } from './api.ts';

/**
 * client-node informers for the two watched kinds, one per namespace (or one cluster-wide when
 * `namespace` is undefined). Listed objects are turned back into wire JSON because watched ones
 * arrive that way, and the cache must hold one shape.
 */
export function gitMirrorInformer(kc: KubeConfig, namespace: string | undefined): InformerLike<GitMirror> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const base = { group: GROUP, version: VERSION, plural: PLURAL };
  const path = namespace
    ? `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`
    : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
  const list = () =>
    namespace ? api.listNamespacedCustomObject({ ...base, namespace }) : api.listClusterCustomObject(base);
  return makeInformer(kc, path, list) as unknown as InformerLike<GitMirror>;
}

/** Only pods carrying the fleet label are listed and watched. */
export function fleetPodInformer(kc: KubeConfig, namespace: string | undefined): InformerLike<Pod> {
  const api = kc.makeApiClient(CoreV1Api);
  const path = namespace ? `/api/v1/namespaces/${namespace}/pods` : '/api/v1/pods';
  const list = async () => {
    const params = { labelSelector: CACHE_LABEL };
    const pods = namespace
      ? await api.listNamespacedPod({ ...params, namespace })
      : await api.listPodForAllNamespaces(params);
    return { ...pods, items: pods.items.map((pod) => JSON.parse(JSON.stringify(pod)) as Pod) };
  };
  return makeInformer(kc, path, list as never, CACHE_LABEL) as unknown as InformerLike<Pod>;
}
