import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { statusPatch } from './kubelet.ts';
import { kubeletConditions } from './pod-conditions.ts';
import type { ContainerStatus, Pod, PodCondition } from './pod-types.ts';

/** The test kubelet's Ready must match the real kubelet's, reasons and messages included. */

function pod(conditions: PodCondition[] = [], gates = ['gitmirror.dev/warm']): Pod {
  return {
    metadata: { name: 'p', namespace: 'ns', uid: 'u' },
    spec: {
      containers: [
        { name: 'gitmirror', image: 'x' },
        { name: 'other', image: 'x' },
      ],
      readinessGates: gates.map((conditionType) => ({ conditionType })),
    },
    status: { conditions },
  };
}

function status(name: string, ready: boolean): ContainerStatus {
  return {
    name,
    image: 'x',
    imageID: '',
    ready,
    started: true,
    restartCount: 0,
    state: { running: { startedAt: '2026-01-01T00:00:00Z' } },
    lastState: {},
  };
}

function conditionsOf(p: Pod, ready: [boolean, boolean]) {
  const statuses = { init: [], regular: [status('gitmirror', ready[0]), status('other', ready[1])] };
  const list = kubeletConditions(p, statuses, 'Running', true, '2026-01-02T00:00:00Z');
  return Object.fromEntries(list.map((c) => [c.type, c]));
}

describe('kubelet pod conditions', () => {
  it('is not Ready while a container is unready, with the kubelet message', () => {
    const c = conditionsOf(pod([{ type: 'gitmirror.dev/warm', status: 'True' }]), [true, false]);
    assert.equal(c.ContainersReady!.status, 'False');
    assert.equal(c.ContainersReady!.message, 'containers with unready status: [other]');
    assert.equal(c.Ready!.status, 'False');
    assert.equal(c.Ready!.reason, 'ContainersNotReady');
    assert.equal(c.Initialized!.status, 'True');
  });

  it('is not Ready while a readiness gate condition is missing or not True', () => {
    const missing = conditionsOf(pod(), [true, true]);
    assert.equal(missing.ContainersReady!.status, 'True');
    assert.equal(missing.Ready!.status, 'False');
    assert.equal(missing.Ready!.reason, 'ReadinessGatesNotReady');
    assert.equal(
      missing.Ready!.message,
      'corresponding condition of pod readiness gate "gitmirror.dev/warm" does not exist.',
    );
    const falseGate = conditionsOf(pod([{ type: 'gitmirror.dev/warm', status: 'False' }]), [true, true]);
    assert.equal(
      falseGate.Ready!.message,
      'the status of pod readiness gate "gitmirror.dev/warm" is not "True", but False',
    );
  });

  it('is Ready when every container is ready and every gate is True', () => {
    const c = conditionsOf(pod([{ type: 'gitmirror.dev/warm', status: 'True' }]), [true, true]);
    assert.equal(c.Ready!.status, 'True');
    assert.equal(c.Ready!.reason, undefined);
  });

  it('moves lastTransitionTime only when the status flips', () => {
    const before = { type: 'Ready', status: 'False' as const, lastTransitionTime: '2025-12-31T00:00:00Z' };
    const same = conditionsOf(pod([before]), [false, false]);
    assert.equal(same.Ready!.lastTransitionTime, '2025-12-31T00:00:00Z');
    const flipped = conditionsOf(pod([before, { type: 'gitmirror.dev/warm', status: 'True' }]), [true, true]);
    assert.equal(flipped.Ready!.lastTransitionTime, '2026-01-02T00:00:00Z');
  });

  it('patches only kubelet conditions, clearing stale reasons and container states', () => {
    const patch = statusPatch({
      phase: 'Running',
      conditions: [
        { type: 'Ready', status: 'True' },
        { type: 'gitmirror.dev/warm', status: 'False' },
      ],
      containerStatuses: [status('gitmirror', true)],
    }) as { conditions: PodCondition[]; containerStatuses: { state: Record<string, unknown> }[] };
    assert.deepEqual(
      patch.conditions.map((c) => c.type),
      ['Ready'],
    );
    assert.equal(patch.conditions[0]!.reason, null);
    assert.equal(patch.containerStatuses[0]!.state.waiting, null);
    assert.equal(patch.containerStatuses[0]!.state.terminated, null);
  });
});
