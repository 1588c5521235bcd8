import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { rangedDownload } from '../../src/store/ranged-download.ts';

const data = randomBytes(1_000_003);

function source(options: { maxDelayMs?: number; shortAt?: number; failAt?: number } = {}) {
  const stats = { inFlight: 0, maxInFlight: 0, requests: 0 };
  const fetchRange = async (start: number, end: number) => {
    stats.requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    try {
      await sleep(Math.random() * (options.maxDelayMs ?? 5));
      if (start === options.failAt) throw new Error('network reset');
      const slice = data.subarray(start, end + 1);
      return start === options.shortAt ? slice.subarray(1) : Buffer.from(slice);
    } finally {
      stats.inFlight--;
    }
  };
  return { fetchRange, stats };
}

type Fetch = ReturnType<typeof source>['fetchRange'];

/** The whole test object in 64 KiB chunks, 4 at a time, unless a test says otherwise. */
function download(
  fetchRange: Fetch,
  overrides: { chunkSize?: number; concurrency?: number; size?: number; signal?: AbortSignal } = {},
) {
  return rangedDownload({
    size: data.length,
    chunkSize: 65_536,
    concurrency: 4,
    fetchRange,
    label: 'obj',
    ...overrides,
  });
}

describe('rangedDownload', () => {
  it('reassembles out-of-order chunks into the exact object', async () => {
    const { fetchRange, stats } = source();
    const stream = download(fetchRange);
    const out = Buffer.concat(await stream.toArray());
    assert.ok(out.equals(data));
    assert.equal(stats.requests, Math.ceil(data.length / 65_536));
    assert.ok(stats.maxInFlight > 1 && stats.maxInFlight <= 4, `max in flight ${stats.maxInFlight}`);
  });

  it('stops fetching while the consumer is not reading', async () => {
    const { fetchRange, stats } = source({ maxDelayMs: 1 });
    const stream = download(fetchRange, { chunkSize: 10_000, concurrency: 3 });
    stream.once('readable', () => {});
    await sleep(200);
    assert.ok(stats.requests <= 3 + 2, `fetched ${stats.requests} chunks with nobody reading`);
    stream.destroy();
  });

  it('handles an empty object and a single short chunk', async () => {
    const empty = download(source().fetchRange, { size: 0 });
    assert.deepEqual(await empty.toArray(), []);
    const tiny = download(source().fetchRange, { size: 5 });
    assert.ok(Buffer.concat(await tiny.toArray()).equals(data.subarray(0, 5)));
  });

  it('fails when a range comes back with the wrong length', async () => {
    const { fetchRange } = source({ shortAt: 65_536 * 3 });
    const stream = download(fetchRange);
    await assert.rejects(stream.toArray(), /returned 65535 bytes/);
  });

  it('fails when a range cannot be fetched', async () => {
    const { fetchRange } = source({ failAt: 65_536 * 2 });
    const stream = download(fetchRange);
    await assert.rejects(stream.toArray(), (err: { code?: string }) => err.code === 'SNAPSHOT_STORE_FAILED');
  });

  it('stops on abort', async () => {
    const controller = new AbortController();
    const { fetchRange } = source({ maxDelayMs: 20 });
    const stream = download(fetchRange, { chunkSize: 1000, concurrency: 2, signal: controller.signal });
    setTimeout(() => controller.abort(), 30);
    await assert.rejects(stream.toArray(), (err: { code?: string }) => err.code === 'ABORTED');
  });
});
