import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { TestClock } from '../../../testing/test-clock.ts';
import { SidecarMetrics } from '../../src/metrics/sidecar-metrics.ts';
import { OnDemandGate } from '../../src/mirrors/on-demand.ts';
import { WarmupBackoff } from '../../src/mirrors/warmup-backoff.ts';

function gate(limit: number) {
  const logged: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged.push(JSON.parse(chunk.toString()).mirror);
      done();
    },
  });
  const clock = new TestClock(1_000);
  const backoff = new WarmupBackoff(clock);
  const logger = pino({ level: 'debug' }, stream);
  const g = new OnDemandGate({ limit, logger, metrics: new SidecarMetrics(), clock, backoff });
  return { gate: g, backoff, clock, logged };
}

describe('the on-demand gate', () => {
  it('refuses when disabled, at the limit, and during the backoff after a failed warm-up', () => {
    assert.equal(gate(0).gate.check('h/a', 0), 'disabled');
    const { gate: g, backoff, clock } = gate(2);
    assert.equal(g.check('h/a', 1), undefined);
    assert.equal(g.check('h/a', 2), 'limit');
    backoff.failed('h/a');
    clock.advance(4_999);
    assert.equal(g.check('h/a', 0), 'backoff');
    clock.advance(1);
    assert.equal(g.check('h/a', 0), undefined, 'after 5 s');
    backoff.failed('h/a');
    clock.advance(9_999);
    assert.equal(g.check('h/a', 0), 'backoff', 'then 10 s');
    assert.equal(g.check('h/b', 0), undefined, 'per repository');
    backoff.forget('h/a');
    assert.equal(g.check('h/a', 0), undefined);
  });

  it('counts every refusal but logs one per repository every 5 minutes, with bounded memory', () => {
    const { gate: g, clock, logged } = gate(1);
    for (let i = 0; i < 5; i++) {
      g.refuse('h/a', 'limit', 1);
      clock.advance(1);
    }
    clock.advance(300_000 - 5);
    g.refuse('h/a', 'limit', 1);
    g.refuse('h/b', 'upstream', 1);
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
    g.refuse('h/c', 'limit', 1);
    for (let i = 0; i < 10_000; i++) g.refuse(`h/flood-${i}`, 'limit', 1);
    g.refuse('h/c', 'limit', 1);
    assert.equal(logged.filter((m) => m === 'h/c').length, 2);
  });
});
