import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { SidecarMetrics } from '../../src/metrics/sidecar-metrics.ts';
import { OnDemandGate } from '../../src/mirrors/on-demand.ts';

function gate(limit: number) {
  const logged: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged.push(JSON.parse(chunk.toString()).mirror);
      done();
    },
  });
  return { gate: new OnDemandGate(limit, pino({ level: 'debug' }, stream), new SidecarMetrics()), logged };
}

describe('the on-demand gate', () => {
  it('refuses when disabled, at the limit, and during the backoff after a failed warm-up', () => {
    assert.equal(gate(0).gate.check('h/a', 0), 'disabled');
    const { gate: g } = gate(2);
    assert.equal(g.check('h/a', 1), undefined);
    assert.equal(g.check('h/a', 2), 'limit');
    g.warmupFailed('h/a', 1_000);
    assert.equal(g.check('h/a', 0, 5_999), 'backoff');
    assert.equal(g.check('h/a', 0, 6_000), undefined, 'after 5 s');
    g.warmupFailed('h/a', 6_000);
    assert.equal(g.check('h/a', 0, 15_999), 'backoff', 'then 10 s');
    assert.equal(g.check('h/b', 0, 7_000), undefined, 'per repository');
    g.warmupSucceeded('h/a');
    assert.equal(g.check('h/a', 0, 6_001), undefined);
  });

  it('counts every refusal but logs one per repository every 5 minutes, with bounded memory', () => {
    const { gate: g, logged } = gate(1);
    for (let i = 0; i < 5; i++) g.refuse('h/a', 'limit', 1, 1_000 + i);
    g.refuse('h/a', 'limit', 1, 1_000 + 300_000);
    g.refuse('h/b', 'upstream', 1, 2_000);
    assert.deepEqual(
      logged,
      ['h/a', 'h/a'],
      'once, then again after 5 minutes; upstream refusals not at all',
    );
    assert.deepEqual(g.status(1), {
      limit: 1,
      count: 1,
      refused: { upstream: 1, disabled: 0, limit: 6, backoff: 0 },
    });
    // A flood of distinct names: the oldest are forgotten, so h/c is logged again.
    g.refuse('h/c', 'limit', 1, 400_000);
    for (let i = 0; i < 10_000; i++) g.refuse(`h/flood-${i}`, 'limit', 1, 400_000);
    g.refuse('h/c', 'limit', 1, 400_001);
    assert.equal(logged.filter((m) => m === 'h/c').length, 2);
  });
});
