import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { type FaultyProxy, startFaultyProxy } from './faulty-proxy.ts';

/** The proxy itself, in front of a plain HTTP server that echoes what it received. */

const BODY = Buffer.alloc(256 * 1024, 'abcdefghijklmnopqrstuvwxyz');
let target: Server;
let proxy: FaultyProxy;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function send(method: string, path: string, body?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${proxy.endpoint}${path}`, {
      method,
      agent: false,
      headers: { host: 'signed.example:9000' },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('error', reject);
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
    req.end(body);
  });
}

before(async () => {
  target = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.url === '/echo') {
      res.writeHead(200, { 'x-host': req.headers.host, 'content-type': 'application/octet-stream' });
      res.end(Buffer.concat(chunks));
      return;
    }
    res.writeHead(200, { 'content-length': BODY.length });
    res.end(req.method === 'HEAD' ? undefined : BODY);
  });
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  proxy = await startFaultyProxy(`http://127.0.0.1:${(target.address() as AddressInfo).port}`);
});

afterEach(() => proxy.heal());

after(async () => {
  await proxy.close();
  target.closeAllConnections();
  await new Promise((resolve) => target.close(resolve));
});

describe('faulty proxy', () => {
  it('forwards method, body and Host header unchanged, and records the request', async () => {
    const payload = Buffer.from('part data');
    const res = await send('PUT', '/echo', payload);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-host'], 'signed.example:9000');
    assert.deepEqual(res.body, payload);
    assert.deepEqual(
      { ...proxy.requests.at(-1), at: 0 },
      { method: 'PUT', url: '/echo', bytes: payload.length, status: 200, at: 0 },
    );
  });

  it('answers an S3-style XML error for the requests a rule selects, and no body to HEAD', async () => {
    const rule = proxy.inject({ kind: 'status', status: 503 }, { method: 'GET', path: /\.tar\.zst$/ });
    const failed = await send('GET', '/bucket/a.tar.zst');
    assert.equal(failed.status, 503);
    assert.match(
      failed.body.toString(),
      /<Error><Code>ServiceUnavailable<\/Code>.*<Resource>\/bucket\/a\.tar\.zst</,
    );
    assert.equal((await send('GET', '/bucket/latest.json')).status, 200, 'other paths pass');
    assert.equal((await send('HEAD', '/bucket/a.tar.zst')).status, 200, 'other methods pass');
    proxy.inject({ kind: 'status', status: 500 }, { method: 'HEAD' });
    const head = await send('HEAD', '/x');
    assert.equal(head.status, 500);
    assert.equal(head.body.length, 0);
    assert.equal(rule.hits, 1);
    assert.equal(proxy.count({ fault: 'status' }), 2);
  });

  it('spreads a fraction evenly and stops after `times`', async () => {
    const half = proxy.inject({ kind: 'status', status: 500 }, { path: /^\/half/, fraction: 0.5 });
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await send('GET', '/half')).status);
    assert.deepEqual(statuses, [200, 500, 200, 500, 200, 500]);
    assert.equal(half.seen, 6);
    const twice = proxy.inject({ kind: 'status', status: 503 }, { path: /^\/twice/, times: 2 });
    const more = [];
    for (let i = 0; i < 4; i++) more.push((await send('GET', '/twice')).status);
    assert.deepEqual(more, [503, 503, 200, 200]);
    assert.equal(twice.hits, 2);
  });

  it('delays requests and trickles bodies', async () => {
    proxy.inject({ kind: 'latency', ms: 200, bytesPerSecond: 1024 * 1024 });
    const started = Date.now();
    const res = await send('GET', '/slow');
    assert.deepEqual(res.body, BODY);
    // 200 ms of latency plus 256 KiB at 1 MiB/s.
    assert.ok(Date.now() - started >= 400, `${Date.now() - started} ms`);
  });

  it('cuts a body after N bytes, with a reset or a clean short end, and flips a byte', async () => {
    proxy.inject({ kind: 'truncate', afterBytes: 1000, how: 'reset' }, { times: 1 });
    await assert.rejects(send('GET', '/cut'), /aborted|ECONNRESET|socket hang up/);
    assert.equal(proxy.requests.at(-1)?.bytes, 1000);

    proxy.inject({ kind: 'truncate', afterBytes: 1000, how: 'end' }, { times: 1 });
    const short = await send('GET', '/short');
    assert.equal(short.status, 200);
    assert.deepEqual(short.body, BODY.subarray(0, 1000));

    proxy.inject({ kind: 'corrupt', atByte: 70_000 }, { times: 1 });
    const flipped = await send('GET', '/flip');
    assert.equal(flipped.body.length, BODY.length);
    const differing = [...flipped.body.keys()].filter((i) => flipped.body[i] !== BODY[i]);
    assert.deepEqual(differing, [70_000]);
  });

  it('goes down (refused or reset connections) and comes back on the same port', async () => {
    await proxy.down('refuse');
    await assert.rejects(send('GET', '/x'), /ECONNREFUSED/);
    await proxy.up();
    assert.equal((await send('GET', '/x')).status, 200);
    const resets = proxy.resetConnections;
    await proxy.down('reset');
    await assert.rejects(send('GET', '/x'), /ECONNRESET|socket hang up/);
    assert.equal(proxy.resetConnections, resets + 1);
    await proxy.heal();
    assert.equal((await send('GET', '/x')).status, 200);
  });
});
