/**
 * The narrow, JSON-shaped views of Kubernetes objects the operator reads. Timestamps are the
 * API's RFC 3339 strings: informer caches mix listed and watched objects, so everything is kept
 * in wire form and parsed where a time is compared.
 */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
}

export interface PodCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  lastProbeTime?: string | null;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
}

export interface Pod {
  metadata: ObjectMeta;
  spec?: {
    containers?: { name: string; ports?: ContainerPort[] }[];
    readinessGates?: { conditionType: string }[];
  };
  status?: {
    phase?: string;
    podIP?: string;
    startTime?: string;
    conditions?: PodCondition[];
  };
}

/** A reference to the object an Event is about. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
}

export interface EventInput {
  regarding: ObjectRef;
  type: 'Normal' | 'Warning';
  reason: string;
  action: string;
  note: string;
}

export interface Lease {
  metadata: ObjectMeta;
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: Date;
    renewTime?: Date;
    leaseTransitions?: number;
  };
}
