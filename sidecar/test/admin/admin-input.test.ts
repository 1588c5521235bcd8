import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { mirrorSpecDigest } from '../../../core/spec-digest.ts';
import { parseMirrorSpec, parseRestoreRequest } from '../../src/admin/admin-input.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';

describe('admin input validation', () => {
  it('accepts a full spec and keeps every field', () => {
    const spec = parseMirrorSpec({
      url: 'https://github.com/a/b.git',
      fetchIntervalSeconds: 60,
      access: 'Private',
      snapshot: { writer: true, intervalSeconds: 3600, retain: 3 },
      credentials: { username: 'bot', password: 'x' },
      lfs: { prefetch: 'AllRefs' },
    });
    assert.deepEqual(spec.snapshot, { writer: true, intervalSeconds: 3600, retain: 3 });
    assert.equal(spec.credentials?.password, 'x');
    assert.deepEqual(spec.lfs, { prefetch: 'AllRefs' });
  });

  it('takes lfs.prefetch as Head, AllRefs or None and nothing else', () => {
    const url = 'https://github.com/a/b.git';
    assert.deepEqual(parseMirrorSpec({ url, lfs: {} }).lfs, {});
    for (const lfs of [{ prefetch: 'Tip' }, { prefetch: 'head' }, { other: 1 }, 'Head', null])
      assert.throws(() => parseMirrorSpec({ url, lfs }), { code: 'BAD_REQUEST', message: /lfs/ });
  });

  it("takes the fleet's peers as admin base URLs, a writer or followers, and nothing else", () => {
    const url = 'https://github.com/a/b.git';
    assert.deepEqual(parseMirrorSpec({ url, fleet: { writer: 'http://10.0.0.7:9090' } }).fleet, {
      writer: 'http://10.0.0.7:9090',
    });
    assert.deepEqual(
      parseMirrorSpec({ url, fleet: { followers: ['http://10.0.0.8:9090', 'http://[fd00::9]:9090/'] } })
        .fleet,
      { followers: ['http://10.0.0.8:9090', 'http://[fd00::9]:9090'] },
    );
    for (const fleet of [
      { writer: 'ftp://10.0.0.7' },
      { writer: 'http://user:pw@10.0.0.7:9090' },
      { writer: 'http://10.0.0.7:9090/v1' },
      { writer: 'http://10.0.0.7:9090?x=1' },
      { writer: 'not a url' },
      { followers: 'http://10.0.0.8:9090' },
      { followers: Array.from({ length: 257 }, (_, i) => `http://10.0.${i >> 8}.${i & 255}:9090`) },
      { writer: 'http://10.0.0.7:9090', followers: ['http://10.0.0.8:9090'] },
      { peers: [] },
    ])
      assert.throws(
        () => parseMirrorSpec({ url, fleet }),
        { code: 'BAD_REQUEST', message: /fleet/ },
        JSON.stringify(fleet),
      );
  });

  it("keeps a token's expiry, and refuses one that is not an RFC 3339 time or an unknown credentials field", () => {
    const url = 'https://github.com/a/b.git';
    const at = '2026-01-01T12:30:00Z';
    assert.deepEqual(
      parseMirrorSpec({ url, credentials: { password: 'ghs_x', expiresAt: at } }).credentials,
      {
        username: undefined,
        password: 'ghs_x',
        expiresAt: at,
      },
    );
    for (const expiresAt of ['2026-01-01', '1767270600', 1767270600, '2026-13-01T00:00:00Z', 'soon']) {
      assert.throws(
        () => parseMirrorSpec({ url, credentials: { password: 'ghs_x', expiresAt } }),
        (err) =>
          isGitMirrorError(err, 'BAD_REQUEST') && /expiresAt must be an RFC 3339 time/.test(err.message),
        String(expiresAt),
      );
    }
    assert.throws(
      () => parseMirrorSpec({ url, credentials: { password: 'ghs_x', expires: at } }),
      /unknown field "credentials.expires"/,
    );
  });

  it('refuses anything else with BAD_REQUEST and never echoes a password (property)', () => {
    const secret = 'pw-canary-123';
    fc.assert(
      fc.property(fc.anything({ withObjectString: true }), fc.string(), (garbage, field) => {
        for (const body of [
          garbage,
          { url: 'https://github.com/a/b', [field]: garbage },
          { url: garbage, credentials: { password: secret, username: garbage } },
        ]) {
          try {
            parseMirrorSpec(body);
          } catch (err) {
            assert.ok(isGitMirrorError(err, 'BAD_REQUEST'), String(err));
            assert.ok(!(err as Error).message.includes(secret));
          }
          try {
            parseRestoreRequest(body);
          } catch (err) {
            assert.ok(isGitMirrorError(err, 'BAD_REQUEST'), String(err));
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('digests specs independently of key order, and differently when credentials change', () => {
    const a = mirrorSpecDigest({
      url: 'u',
      snapshot: { writer: true, retain: 3 },
      credentials: { password: 'p' },
    });
    const b = mirrorSpecDigest({
      credentials: { password: 'p' },
      snapshot: { retain: 3, writer: true },
      url: 'u',
    });
    const c = mirrorSpecDigest({
      url: 'u',
      snapshot: { writer: true, retain: 3 },
      credentials: { password: 'q' },
    });
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.match(a, /^[0-9a-f]{32}$/);
  });
});
