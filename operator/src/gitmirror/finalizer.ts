import { FINALIZER, type GitMirror } from '../api/gitmirror.ts';
import type { KubeApi } from '../kube/api.ts';

export function hasFinalizer(gm: GitMirror): boolean {
  return gm.metadata.finalizers?.includes(FINALIZER) ?? false;
}

/**
 * Adds the finalizer before any sidecar is given the mirror, so a delete always comes back to us
 * for cleanup. Guarded by resourceVersion: a conflict means a newer object to reconcile.
 */
export async function ensureFinalizer(api: Pick<KubeApi, 'setGitMirrorFinalizers'>, gm: GitMirror) {
  if (hasFinalizer(gm)) return gm;
  const finalizers = [...(gm.metadata.finalizers ?? []), FINALIZER];
  return api.setGitMirrorFinalizers(gm.metadata.namespace ?? '', gm.metadata.name, finalizers, rv(gm));
}

export async function removeFinalizer(api: Pick<KubeApi, 'setGitMirrorFinalizers'>, gm: GitMirror) {
  const finalizers = (gm.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
  await api.setGitMirrorFinalizers(gm.metadata.namespace ?? '', gm.metadata.name, finalizers, rv(gm));
}

function rv(gm: GitMirror): string {
  return gm.metadata.resourceVersion ?? '';
}
