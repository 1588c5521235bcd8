import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { LfsKeyring, LfsUrlTokens } from '../../src/lfs/url-token.ts';

const oid = 'c'.repeat(64);
const repo = 'github.com/org/repo';
const upstream = {
  href: 'https://lfs.example.com/o/1?sig=abc',
  header: { Authorization: 'RemoteAuth secret-42' },
};

describe('LFS object URL tokens', () => {
  let root: string;
  before(async () => {
    root = await tempDir('gitmirror-lfs-token-');
  });
  after(() => removeDir(root));

  it("grant one object of one repository until they expire, and carry upstream's action unseen", () => {
    const clock = new TestClock(1_000_000);
    const tokens = new LfsUrlTokens({ keyring: LfsKeyring.fromSecret('s3cret'), clock, ttlMs: 60_000 });
    const { token, expiresInSeconds } = tokens.issue({ repo, oid, size: 5, upstream });
    assert.equal(expiresInSeconds, 60);
    assert.ok(
      !token.includes('secret-42') && !Buffer.from(token, 'base64url').toString().includes('secret-42'),
    );
    assert.deepEqual(tokens.open(token, { repo, oid }), {
      repo,
      oid,
      size: 5,
      expiresAt: 1_060_000,
      upstream,
    });
    assert.throws(() => tokens.open(token, { repo: 'github.com/org/other', oid }), {
      code: 'LFS_TOKEN_INVALID',
    });
    assert.throws(() => tokens.open(token, { repo, oid: 'd'.repeat(64) }), { code: 'LFS_TOKEN_INVALID' });
    assert.throws(() => tokens.open(undefined, { repo, oid }), { code: 'LFS_TOKEN_INVALID', status: 403 });
    clock.advance(60_000);
    assert.throws(() => tokens.open(token, { repo, oid }), { message: /expired/ });
  });

  it('refuse any change to a token, and tokens sealed with another secret', () => {
    const tokens = new LfsUrlTokens({ keyring: LfsKeyring.fromSecret('s3cret') });
    const { token } = tokens.issue({ repo, oid, size: 5 });
    const raw = Buffer.from(token, 'base64url');
    for (let i = 0; i < raw.length; i += 7) {
      const flipped = Buffer.from(raw);
      flipped[i]! ^= 1;
      assert.throws(() => tokens.open(flipped.toString('base64url'), { repo, oid }), {
        code: 'LFS_TOKEN_INVALID',
      });
    }
    for (const junk of ['', 'x', '!!!!', 'a'.repeat(20_000)])
      assert.throws(() => tokens.open(junk, { repo, oid }), { code: 'LFS_TOKEN_INVALID' });
    const other = new LfsUrlTokens({ keyring: LfsKeyring.fromSecret('another') });
    assert.throws(() => other.open(token, { repo, oid }), { code: 'LFS_TOKEN_INVALID' });
    const random = new LfsUrlTokens({ keyring: LfsKeyring.random() });
    assert.throws(() => random.open(token, { repo, oid }), { code: 'LFS_TOKEN_INVALID' });
  });

  it("replicas sharing the secret file open each other's tokens, also those issued before a rotation", async () => {
    const clock = new TestClock(0);
    const file = join(root, 'admin-token');
    await writeFile(file, 'first-token\n');
    const a = new LfsUrlTokens({ keyring: await LfsKeyring.fromSecretFile(file, { clock }), clock });
    const bKeys = await LfsKeyring.fromSecretFile(file, { clock });
    const b = new LfsUrlTokens({ keyring: bKeys, clock });
    const before = a.issue({ repo, oid, size: 1 }).token;
    assert.equal(b.open(before, { repo, oid }).size, 1);

    await writeFile(file, 'second-token\n');
    clock.advance(6_000);
    b.issue({ repo, oid, size: 1 }); // notices the file changed
    await bKeys.settled();
    const after = b.issue({ repo, oid, size: 2 }).token;
    assert.equal(b.open(before, { repo, oid }).size, 1, 'a token from before the rotation still opens');
    assert.throws(
      () => a.open(after, { repo, oid }),
      { code: 'LFS_TOKEN_INVALID' },
      'a has not reloaded yet',
    );
    const c = new LfsUrlTokens({ keyring: await LfsKeyring.fromSecretFile(file, { clock }), clock });
    assert.equal(c.open(after, { repo, oid }).size, 2);
  });
});
