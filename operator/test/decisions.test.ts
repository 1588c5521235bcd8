import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sidecarTarget } from '../src/fleet/members.ts';
import { fleetPeers } from '../src/fleet/spec.ts';
import { setCondition } from '../src/gitmirror/conditions.ts';
import { chooseWriter } from '../src/gitmirror/writer-selection.ts';
import { decideGate, type MirrorProgress } from '../src/warmup/gate.ts';

const pod = (name: string, createdMs: number, ready: boolean, writing = false) => ({
  name,
  createdMs,
  ready,
  writing,
});

describe('chooseWriter', () => {
  test('nobody writes while no replica is warm', () => {
    assert.equal(chooseWriter(undefined, [pod('a', 1, false)]), undefined);
    assert.equal(chooseWriter('a', []), undefined);
  });

  test('keeps the recorded writer over an older warm pod', () => {
    assert.equal(chooseWriter('b', [pod('a', 1, true), pod('b', 2, true)]), 'b');
  });

  test('without a record, keeps the pod that already writes', () => {
    assert.equal(chooseWriter(undefined, [pod('a', 1, true), pod('b', 2, true, true)]), 'b');
  });

  test('a recorded writer that is not warm loses the role to the oldest warm pod', () => {
    assert.equal(chooseWriter('x', [pod('x', 0, false), pod('c', 3, true), pod('b', 2, true)]), 'b');
  });
});

describe('fleetPeers', () => {
  const fleet = { writer: 'http://a:9090', members: ['http://c:9090', 'http://a:9090', 'http://b:9090'] };
  test('the writer gets its followers, each follower the writer', () => {
    assert.deepEqual(fleetPeers('http://a:9090', fleet), { followers: ['http://b:9090', 'http://c:9090'] });
    assert.deepEqual(fleetPeers('http://b:9090', fleet), { writer: 'http://a:9090' });
  });
  test('nobody gets peers without a writer, alone, or outside the members', () => {
    assert.equal(fleetPeers('http://b:9090', { ...fleet, writer: undefined }), undefined);
    assert.equal(
      fleetPeers('http://a:9090', { writer: 'http://a:9090', members: ['http://a:9090'] }),
      undefined,
    );
    assert.equal(fleetPeers('http://gone:9090', fleet), undefined);
  });
});

describe('decideGate', () => {
  const m = (over: Partial<MirrorProgress>): MirrorProgress => ({
    id: 'h/r',
    ready: false,
    timeoutMs: 600_000,
    onTimeout: 'Open',
    ...over,
  });
  const base = { startedMs: 0, pollMs: 5_000 };

  test('warm when every mirror is ready', () => {
    const d = decideGate({ ...base, nowMs: 1, mirrors: [m({ ready: true }), m({ id: 'h/s', ready: true })] });
    assert.deepEqual([d.status, d.reason, d.requeueAfterMs], ['True', 'Warm', undefined]);
  });

  test('waiting mirrors are named with their phase, and long lists are cut', () => {
    const mirrors = Array.from({ length: 8 }, (_, i) => m({ id: `h/r${i}`, phase: 'downloading' }));
    const d = decideGate({ ...base, nowMs: 1, mirrors });
    assert.equal(d.reason, 'WarmingUp');
    assert.match(d.message, /^0\/8 mirrors ready; waiting for h\/r0 \(downloading\), .* and 3 more$/);
  });

  test('the next look is never later than the first deadline', () => {
    const d = decideGate({ ...base, nowMs: 598_000, mirrors: [m({})] });
    assert.equal(d.requeueAfterMs, 2_000);
  });

  test('a mirror that is ready does not keep a Closed timeout from applying to the rest', () => {
    const d = decideGate({
      ...base,
      nowMs: 600_000,
      mirrors: [m({ ready: true, onTimeout: 'Closed' }), m({})],
    });
    assert.deepEqual([d.status, d.reason], ['True', 'WarmupTimeout']);
  });

  test('a warm-up refused for lack of space waits as InsufficientStorage, then follows onTimeout', () => {
    const short = m({
      phase: 'failed',
      error: 'INSUFFICIENT_STORAGE: ... 4 MiB missing',
      insufficientStorage: true,
    });
    const waiting = decideGate({ ...base, nowMs: 1_000, mirrors: [short] });
    assert.deepEqual([waiting.status, waiting.reason], ['False', 'InsufficientStorage']);
    assert.match(waiting.message, /h\/r \(failed: INSUFFICIENT_STORAGE: \.\.\. 4 MiB missing\)/);
    const open = decideGate({ ...base, nowMs: 600_000, mirrors: [short] });
    assert.deepEqual([open.status, open.reason], ['True', 'WarmupTimeout']);
    const closed = decideGate({ ...base, nowMs: 600_000, mirrors: [{ ...short, onTimeout: 'Closed' }] });
    assert.deepEqual([closed.status, closed.reason], ['False', 'WarmupTimeout']);
  });

  test('one mirror still within its timeout keeps the gate waiting', () => {
    const d = decideGate({ ...base, nowMs: 600_000, mirrors: [m({}), m({ id: 'h/s', timeoutMs: 900_000 })] });
    assert.deepEqual([d.status, d.reason, d.requeueAfterMs], ['False', 'WarmingUp', 5_000]);
  });
});

describe('setCondition', () => {
  test('moves lastTransitionTime only when the status flips', () => {
    const c = {
      type: 'Ready',
      status: 'False' as const,
      reason: 'WarmingUp',
      message: '0/1',
      observedGeneration: 1,
    };
    const one = setCondition(undefined, c, 't1');
    const two = setCondition(one, { ...c, reason: 'MirrorFailed', message: 'x' }, 't2');
    assert.equal(two[0]?.lastTransitionTime, 't1');
    const three = setCondition(two, { ...c, status: 'True', reason: 'Warm' }, 't3');
    assert.equal(three[0]?.lastTransitionTime, 't3');
    assert.equal(three.length, 1);
  });
});

describe('sidecarTarget', () => {
  const p = (ip: string, ports: { name?: string; containerPort: number }[] = []) => ({
    metadata: { name: 'p', namespace: 'ns' },
    spec: { containers: [{ name: 'c', ports }] },
    status: { podIP: ip },
  });

  test('uses the pod IP and the configured port, or a container port named gitmirror-admin', () => {
    assert.equal(sidecarTarget(p('10.1.2.3'), 9090, 't').baseUrl, 'http://10.1.2.3:9090');
    assert.equal(
      sidecarTarget(p('10.1.2.3', [{ name: 'gitmirror-admin', containerPort: 19090 }]), 9090, 't').baseUrl,
      'http://10.1.2.3:19090',
    );
    assert.equal(sidecarTarget(p('fd00::5'), 9090, 't').baseUrl, 'http://[fd00::5]:9090');
  });
});
