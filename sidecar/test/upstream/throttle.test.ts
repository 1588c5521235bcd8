import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CurlTraceReader } from '../../src/upstream/curl-trace.ts';
import {
  DEFAULT_THROTTLE_WAIT_MS,
  MAX_THROTTLE_WAIT_MS,
  MIN_THROTTLE_WAIT_MS,
  parseRetryAfter,
  throttleOf,
} from '../../src/upstream/throttle.ts';

const NOW = Date.parse('2026-12-03T12:00:00Z');

describe('throttleOf', () => {
  it('backs off for the Retry-After of a 429 or a 503', () => {
    assert.deepEqual(throttleOf({ status: 429, headers: { 'retry-after': '5' } }, NOW), {
      status: 429,
      waitMs: 5000,
      basis: 'retry-after',
    });
    assert.equal(throttleOf({ status: 503, headers: { 'retry-after': '120' } }, NOW)?.waitMs, 120_000);
  });

  it('reads Retry-After as an HTTP date too', () => {
    const answer = { status: 429, headers: { 'retry-after': 'Thu, 03 Dec 2026 12:00:30 GMT' } };
    assert.equal(throttleOf(answer, NOW)?.waitMs, 30_000);
  });

  it('waits a minute after a 429 that names no wait, and not at all after a plain 503 (an outage)', () => {
    assert.deepEqual(throttleOf({ status: 429, headers: {} }, NOW), {
      status: 429,
      waitMs: DEFAULT_THROTTLE_WAIT_MS,
      basis: 'default',
    });
    assert.equal(throttleOf({ status: 503, headers: {} }, NOW), undefined);
    assert.equal(throttleOf({ status: 500, headers: { 'retry-after': '5' } }, NOW), undefined);
    assert.equal(throttleOf({ status: 200, headers: { 'retry-after': '5' } }, NOW), undefined);
  });

  it("honours GitHub's primary rate limit: remaining 0 until the reset, also as a 403", () => {
    const headers = { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(NOW / 1000 + 90) };
    assert.deepEqual(throttleOf({ status: 403, headers }, NOW), {
      status: 403,
      waitMs: 90_000,
      basis: 'rate-limit-reset',
    });
    // A 403 that is only a refusal is not a throttle.
    assert.equal(throttleOf({ status: 403, headers: { 'x-ratelimit-remaining': '12' } }, NOW), undefined);
  });

  it('keeps any wait between a second and an hour, whatever upstream says', () => {
    assert.equal(
      throttleOf({ status: 429, headers: { 'retry-after': '0' } }, NOW)?.waitMs,
      MIN_THROTTLE_WAIT_MS,
    );
    assert.equal(
      throttleOf({ status: 429, headers: { 'retry-after': '999999999' } }, NOW)?.waitMs,
      MAX_THROTTLE_WAIT_MS,
    );
  });

  it('ignores Retry-After values it cannot read', () => {
    for (const bad of ['soon', '-5', '5.5', '1e3', 'Thu, 03 Dec 2026', ''])
      assert.equal(parseRetryAfter(bad, NOW), undefined, bad);
  });
});

describe('CurlTraceReader', () => {
  const trace = [
    '12:00:00.000000 http.c:725              == Info:   Trying 127.0.0.1:8080...',
    '12:00:00.000001 http.c:684              => Send header: GET /x.git/info/refs?service=git-upload-pack HTTP/1.1',
    '12:00:00.000002 http.c:684              => Send header: Authorization: Basic <redacted>',
    '12:00:00.000003 http.c:684              <= Recv header: HTTP/1.1 401 Unauthorized',
    '12:00:00.000004 http.c:684              <= Recv header: WWW-Authenticate: Basic realm="x"',
    '12:00:00.000005 http.c:684              <= Recv header: HTTP/2 429',
    '12:00:00.000006 http.c:684              <= Recv header: retry-after: 7',
    '12:00:00.000007 http.c:684              <= Recv header: Set-Cookie: session=secret-value',
    '12:00:00.000008 http.c:684              <= Recv header: X-RateLimit-Remaining: 0',
    '',
  ].join('\n');

  it('keeps the last response: its status and only the headers that matter for throttling', () => {
    const reader = new CurlTraceReader();
    reader.feed(trace);
    assert.deepEqual(reader.lastResponse(), {
      status: 429,
      headers: { 'retry-after': '7', 'x-ratelimit-remaining': '0' },
    });
  });

  it('reads the same however the pipe splits the trace', () => {
    for (let size = 1; size < 40; size += 3) {
      const reader = new CurlTraceReader();
      for (let i = 0; i < trace.length; i += size) reader.feed(Buffer.from(trace.slice(i, i + size)));
      assert.deepEqual(reader.lastResponse()?.headers, { 'retry-after': '7', 'x-ratelimit-remaining': '0' });
    }
  });

  it('skips a line too long to be a header rather than buffering it', () => {
    const reader = new CurlTraceReader();
    reader.feed('<= Recv header: HTTP/1.1 429 Too Many\n');
    reader.feed(`<= Recv header: Retry-After: ${'9'.repeat(20_000)}`);
    reader.feed('\n<= Recv header: Retry-After: 3\n');
    assert.deepEqual(reader.lastResponse(), { status: 429, headers: { 'retry-after': '3' } });
  });
});
