import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeLabels } from '../kubelet/kubelet.ts';
import type { Pod } from '../kubelet/pod-types.ts';
import { schedulable } from './scheduler.ts';

const node = { name: 'e2e-node', labels: nodeLabels('e2e-node') };

function pod(spec: Partial<Pod['spec']> = {}, metadata: Partial<Pod['metadata']> = {}): Pod {
  return {
    metadata: { name: 'p', namespace: 'ns', uid: 'u', ...metadata },
    spec: { containers: [], ...spec },
  };
}

describe("the test scheduler's choice", () => {
  it('binds a pending pod whose nodeSelector the node meets, or that has none', () => {
    assert.equal(schedulable(pod(), node), true);
    const selector = { 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' };
    assert.equal(schedulable(pod({ nodeSelector: selector }), node), true);
    assert.equal(schedulable(pod({ schedulerName: 'default-scheduler' }), node), true);
  });

  it('leaves alone a pod that is bound, being deleted, for another scheduler, or selecting other nodes', () => {
    assert.equal(schedulable(pod({ nodeName: 'e2e-node' }), node), false);
    assert.equal(schedulable(pod({}, { deletionTimestamp: '2026-01-01T00:00:00Z' }), node), false);
    assert.equal(schedulable(pod({ schedulerName: 'other' }), node), false);
    assert.equal(schedulable(pod({ nodeSelector: { 'kubernetes.io/os': 'windows' } }), node), false);
    assert.equal(schedulable(pod({ nodeSelector: { disk: 'ssd' } }), node), false);
  });
});
