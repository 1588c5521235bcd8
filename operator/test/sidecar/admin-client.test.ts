import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { isOperatorError } from '../../src/errors/operator-error.ts';
import { HttpSidecarClient, type SidecarTarget } from '../../src/sidecar/admin-client.ts';

const TOKEN = 'the-admin-token';
const seen: { method: string; url: string; auth: string; body: string }[] = [];
let reply: (url: string) => { status: number; body?: unknown; delayMs?: number } = () => ({
  status: 200,
  body: {},
});
let server: Server;
let target: SidecarTarget;
const results: string[] = [];
const client = new HttpSidecarClient({ timeoutMs: 200, observe: (_m, r) => results.push(r) });

before(async () => {
  server = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization ?? '', body });
    const r = reply(req.url ?? '');
    if (r.delayMs) await new Promise((resolve) => setTimeout(resolve, r.delayMs));
    res.writeHead(r.status, { 'content-type': 'application/json' });
    res.end(r.body === undefined ? '' : JSON.stringify(r.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  target = {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    token: TOKEN,
    pod: 'ns/p1',
  };
});

after(() => server.close());

const mirror = {
  id: 'github.com/org/repo',
  url: 'https://github.com/org/repo.git',
  state: 'empty',
  ready: false,
};

describe('HttpSidecarClient', () => {
  test('PUT sends the spec as JSON with the bearer token to /v1/mirrors/{host/path}', async () => {
    reply = () => ({ status: 201, body: mirror });
    const spec = { url: mirror.url, snapshot: { writer: false } };
    const status = await client.putMirror(target, 'github.com/org/repo', spec);
    assert.equal(status.id, mirror.id);
    const req = seen.at(-1)!;
    assert.equal(req.method, 'PUT');
    assert.equal(req.url, '/v1/mirrors/github.com/org/repo');
    assert.equal(req.auth, `Bearer ${TOKEN}`);
    assert.deepEqual(JSON.parse(req.body), spec);
    assert.equal(results.at(-1), 'ok');
  });

  test('list, restore and delete hit their routes', async () => {
    reply = () => ({ status: 200, body: { mirrors: [mirror] } });
    assert.equal((await client.listMirrors(target)).length, 1);
    reply = () => ({ status: 202, body: mirror });
    await client.restore(target, mirror.id, {});
    assert.equal(seen.at(-1)?.url, '/v1/mirrors/github.com/org/repo/restore');
    assert.equal(seen.at(-1)?.body, '{}');
    reply = () => ({ status: 204 });
    await client.deleteMirror(target, mirror.id);
    assert.equal(seen.at(-1)?.method, 'DELETE');
  });

  test('404 means absent for GET and done for DELETE', async () => {
    reply = () => ({ status: 404, body: { error: { code: 'NOT_FOUND', message: 'no such mirror' } } });
    assert.equal(await client.getMirror(target, mirror.id), undefined);
    await client.deleteMirror(target, mirror.id);
    await assert.rejects(client.restore(target, mirror.id, {}), (err) =>
      isOperatorError(err, 'SIDECAR_NOT_FOUND'),
    );
  });

  test('error answers map to codes, keep the sidecar code and never the token', async () => {
    reply = () => ({ status: 401, body: { error: { code: 'UNAUTHORIZED', message: 'bad token' } } });
    await assert.rejects(client.listMirrors(target), (err) => {
      assert.ok(isOperatorError(err, 'SIDECAR_UNAUTHORIZED'));
      assert.doesNotMatch(err.message, new RegExp(TOKEN));
      return true;
    });
    reply = () => ({
      status: 400,
      body: { error: { code: 'BAD_REPO_PATH', message: 'url names another repo' } },
    });
    await assert.rejects(client.putMirror(target, mirror.id, { url: 'x' }), (err) => {
      assert.ok(isOperatorError(err, 'SIDECAR_REJECTED'));
      assert.equal(err.remoteCode, 'BAD_REPO_PATH');
      assert.equal(err.status, 400);
      assert.match(err.message, /PUT \/v1\/mirrors\/github.com\/org\/repo on pod ns\/p1: BAD_REPO_PATH/);
      return true;
    });
    reply = () => ({ status: 503, body: 'not json' });
    await assert.rejects(client.listMirrors(target), (err) => isOperatorError(err, 'SIDECAR_FAILED'));
    assert.equal(results.at(-1), 'SIDECAR_FAILED');
  });

  test('a 200 that is not JSON is a bad response', async () => {
    reply = () => ({ status: 200, body: undefined });
    const raw = createServer((_req, res) => res.writeHead(200).end('<html>'));
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const t = { ...target, baseUrl: `http://127.0.0.1:${(raw.address() as AddressInfo).port}` };
    await assert.rejects(client.listMirrors(t), (err) => isOperatorError(err, 'SIDECAR_BAD_RESPONSE'));
    raw.close();
  });

  test('a slow sidecar times out and a closed port is unreachable', async () => {
    reply = () => ({ status: 200, body: { mirrors: [] }, delayMs: 500 });
    await assert.rejects(client.listMirrors(target), (err) => isOperatorError(err, 'SIDECAR_TIMEOUT'));
    const closed = { ...target, baseUrl: 'http://127.0.0.1:1' };
    await assert.rejects(client.listMirrors(closed), (err) => isOperatorError(err, 'SIDECAR_UNREACHABLE'));
  });
});
