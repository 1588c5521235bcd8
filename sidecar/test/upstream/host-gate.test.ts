import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { HostGate, type HostGateObserver, UpstreamHosts } from '../../src/upstream/host-gate.ts';
import { REF_CHECK_MARGIN_MS } from '../../src/upstream/request-spacing.ts';
import { throttledError } from '../../src/upstream/throttle.ts';

function recorder() {
  const events: string[] = [];
  const observer: HostGateObserver = {
    throttled: (host, t, { started }) =>
      events.push(`${started ? 'start' : 'extend'} ${host} ${t.status} ${t.waitMs}`),
    resumed: (host) => events.push(`resumed ${host}`),
  };
  return { events, observer };
}

describe('HostGate', () => {
  it('lets at most K transfers run at once; the next starts when one ends', async () => {
    const gate = new HostGate('github.com', { transfers: 2, refChecksPerSecond: 10 });
    const first = await gate.acquire({ work: 'transfer', key: 'a' });
    await gate.acquire({ work: 'transfer', key: 'b' });
    let thirdStarted = false;
    const third = gate.acquire({ work: 'transfer', key: 'c' }).then((release) => {
      thirdStarted = true;
      return release;
    });
    await sleep(20);
    assert.equal(thirdStarted, false);
    assert.deepEqual(gate.status().transfers, { active: 2, queued: 1, limit: 2 });
    first.end();
    first.end(); // ending a turn twice frees one slot, not two
    (await third).end();
    assert.equal(thirdStarted, true);
    assert.deepEqual(gate.status().transfers, { active: 1, queued: 0, limit: 2 });
  });

  it('serves queued work in turns by mirror: one busy mirror does not starve another', async () => {
    const gate = new HostGate('github.com', { transfers: 1, refChecksPerSecond: 10 });
    const hold = await gate.acquire({ work: 'transfer', key: 'busy' });
    const order: string[] = [];
    const all = [
      ...[1, 2, 3, 4].map((i) => ({ key: 'busy', name: `busy-${i}` })),
      { key: 'quiet', name: 'quiet-1' },
    ].map(({ key, name }) =>
      gate.run({ work: 'transfer', key }, async () => {
        order.push(name);
      }),
    );
    hold.end();
    await Promise.all(all);
    assert.deepEqual(order, ['busy-1', 'quiet-1', 'busy-2', 'busy-3', 'busy-4']);
  });

  it('sends at most R ref checks per second, evenly spaced, whatever the demand', async () => {
    const gate = new HostGate('github.com', { transfers: 50, refChecksPerSecond: 20 });
    const sent: number[] = [];
    const t0 = Date.now();
    // Each check's request leaves 5 to 60 ms after its start, as git's does on a busy machine.
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        gate.run({ work: 'ref-check', key: `mirror-${i}` }, async (turn) => {
          await sleep(5 + ((i * 37) % 56));
          sent.push(Date.now() - t0);
          turn.requestSent();
          await sleep(30);
        }),
      ),
    );
    // Spaced by (1 s + margin) / R, give or take 3 ms: timers and Date.now() round to whole milliseconds.
    const spacing = (1000 + REF_CHECK_MARGIN_MS) / 20;
    for (let i = 1; i < sent.length; i++)
      assert.ok(
        sent[i]! - sent[i - 1]! >= spacing - 3,
        `requests ${i - 1} and ${i} left at ${sent[i - 1]} and ${sent[i]} ms`,
      );
    for (const at of sent) assert.ok(sent.filter((t) => t >= at && t < at + 1000).length <= 20);
    // Starts move earlier by the shortest start-to-send delay seen, so a request is late by at most
    // the spread of those delays (55 ms here), and a check does not wait for the previous to end.
    assert.ok(
      sent.at(-1)! - sent[0]! < 29 * (spacing + 55) + 200,
      `30 requests took ${sent.at(-1)! - sent[0]!} ms`,
    );
  });

  it('lets nothing through while upstream asked to wait, refusing at once with the time left, then resumes by itself', async () => {
    const { events, observer } = recorder();
    const gate = new HostGate('github.com', { transfers: 1, refChecksPerSecond: 100 }, { observer });
    const hold = await gate.acquire({ work: 'transfer', key: 'a' });
    const waiting = gate.acquire({ work: 'transfer', key: 'b' });
    const throttle = gate.observe({ status: 429, headers: { 'retry-after': '1' } });
    assert.deepEqual(throttle, { status: 429, waitMs: 1000, basis: 'retry-after' });
    gate.observe({ status: 429, headers: { 'retry-after': '1' } });
    assert.ok(gate.backoffRemainingMs() > 900);
    assert.match(gate.status().backoffReason ?? '', /^429, Retry-After 1 s$/);
    const refused = (err: unknown) =>
      isGitMirrorError(err, 'UPSTREAM_THROTTLED') &&
      err.retryAfterMs! > 900 &&
      err.retryAfterMs! <= 1000 &&
      /^github\.com asked us to wait \(429, Retry-After 1 s\); 1 s left$/.test(err.message);
    // Work that waited when the backoff started, and work asked for during it: refused at once.
    await assert.rejects(waiting, refused);
    for (const work of ['transfer', 'ref-check'] as const)
      await assert.rejects(
        gate.run({ work, key: 'c' }, async () => 'ran'),
        refused,
      );
    hold.end();
    await sleep(1000);
    assert.equal(gate.backoffRemainingMs(), 0);
    assert.equal(await gate.run({ work: 'ref-check', key: 'c' }, async () => 'ran'), 'ran');
    assert.equal(gate.status().backoffUntil, undefined);
    assert.deepEqual(events, [
      'start github.com 429 1000',
      'extend github.com 429 1000',
      'resumed github.com',
    ]);
  });

  it('backs the host off when work fails because upstream throttled it', async () => {
    const gate = new HostGate('github.com', { transfers: 4, refChecksPerSecond: 100 });
    const throttle = { status: 503, waitMs: 2000, basis: 'retry-after' as const };
    await assert.rejects(
      gate.run({ work: 'transfer', key: 'm' }, async () => {
        throw throttledError('git fetch', 'github.com', throttle);
      }),
      (err) => isGitMirrorError(err, 'UPSTREAM_THROTTLED') && err.retryAfterMs === 2000,
    );
    assert.ok(gate.backoffRemainingMs() > 1900);
    // Other failures do not back off.
    const other = new HostGate('gitlab.com', { transfers: 4, refChecksPerSecond: 100 });
    await assert.rejects(
      other.run({ work: 'transfer', key: 'm' }, async () => {
        throw new Error('network down');
      }),
    );
    assert.equal(other.backoffRemainingMs(), 0);
  });

  it('gives up a wait whose caller went away, without losing the turn of anyone else', async () => {
    const gate = new HostGate('github.com', { transfers: 1, refChecksPerSecond: 10 });
    const hold = await gate.acquire({ work: 'transfer', key: 'a' });
    const abort = new AbortController();
    const gaveUp = gate.acquire({ work: 'transfer', key: 'b', signal: abort.signal });
    const next = gate.acquire({ work: 'transfer', key: 'c' });
    abort.abort();
    await assert.rejects(gaveUp, (err) => isGitMirrorError(err, 'ABORTED'));
    hold.end();
    (await next).end();
    assert.deepEqual(gate.status().transfers, { active: 0, queued: 0, limit: 1 });
  });
});

describe('UpstreamHosts', () => {
  it('gives every mirror of a host the same gate, and each host its own', () => {
    const hosts = new UpstreamHosts({ transfers: 4, refChecksPerSecond: 2 });
    assert.equal(hosts.gate('https://github.com/a/b.git'), hosts.gate('https://GitHub.com/c/d'));
    assert.equal(hosts.gate('github.com'), hosts.gate('https://github.com/a/b'));
    assert.notEqual(hosts.gate('https://gitlab.com/a/b'), hosts.gate('https://github.com/a/b'));
    assert.deepEqual(
      hosts.status().map((s) => s.host),
      ['github.com', 'gitlab.com'],
    );
  });
});
