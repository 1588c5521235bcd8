import type { SnapshotRef as CoreSnapshotRef } from '../../../core/snapshot.ts';
import type { GitMirrorSpec, GitMirrorStatus } from './gitmirror.gen.ts';
import type { ObjectMeta } from './kubernetes.ts';

export type { GitMirrorSpec, GitMirrorStatus } from './gitmirror.gen.ts';

export const GROUP = 'gitmirror.dev';
export const VERSION = 'v1alpha1';
export const PLURAL = 'gitmirrors';
export const KIND = 'GitMirror';

/** Pods with this label join the fleet named by its value. */
export const CACHE_LABEL = 'gitmirror.dev/cache';
/** The readiness-gate condition the operator alone writes on fleet pods. */
export const WARM_CONDITION = 'gitmirror.dev/warm';
/** Held on every GitMirror until its mirror is removed from the fleet's sidecars. */
export const FINALIZER = 'gitmirror.dev/cleanup';
/** A container port with this name overrides the configured sidecar admin port. */
export const ADMIN_PORT_NAME = 'gitmirror-admin';

export type Condition = NonNullable<GitMirrorStatus['conditions']>[number];

/**
 * `status.latestSnapshot` is the contract's snapshot reference. The CRD generates its own copy
 * of the shape; should the two part, this becomes `never` and the typecheck fails where it is used.
 */
type CrdSnapshotRef = NonNullable<GitMirrorStatus['latestSnapshot']>;
export type SnapshotRef = [CrdSnapshotRef, CoreSnapshotRef] extends [CoreSnapshotRef, CrdSnapshotRef]
  ? CoreSnapshotRef
  : never;

export interface GitMirror {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: GitMirrorSpec;
  status?: GitMirrorStatus;
}

/** The work-queue key of a namespaced object. */
export function keyOf(meta: { namespace?: string; name: string }): string {
  return `${meta.namespace ?? ''}/${meta.name}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}
