import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestClock } from '../../../testing/test-clock.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { CredentialsFile, HeldCredentials } from '../../src/git/credentials.ts';
import { gitEnvironment } from '../../src/git/git-runner.ts';

describe('credentials file', () => {
  const file = CredentialsFile.parse(
    [
      '# comment',
      'https://bot:host%40wide@github.com',
      'https://team:per-org@github.com/acme',
      'https://ghp_token@github.com/acme/special.git',
      'http://u:p@localhost:8080',
    ].join('\n'),
  );

  it('picks the longest matching path, decoding user and password', () => {
    assert.deepEqual(file.lookup('https://github.com/other/repo.git'), {
      username: 'bot',
      password: 'host@wide',
    });
    assert.deepEqual(file.lookup('https://github.com/acme/repo.git'), {
      username: 'team',
      password: 'per-org',
    });
    assert.deepEqual(file.lookup('https://github.com/acme/special.git'), {
      username: 'x-access-token',
      password: 'ghp_token',
    });
    assert.equal(
      file.lookup('https://github.com/acmecorp/repo.git')?.username,
      'bot',
      'a prefix must end at a segment',
    );
  });

  it('matches scheme and port exactly', () => {
    assert.equal(file.lookup('http://github.com/acme/repo.git'), undefined);
    assert.deepEqual(file.lookup('http://localhost:8080/a/b.git'), { username: 'u', password: 'p' });
    assert.equal(file.lookup('http://localhost:9090/a/b.git'), undefined);
  });

  it('rejects bad lines without echoing them', () => {
    assert.throws(
      () => CredentialsFile.parse('not-a-url-with-secret-s3cr3t'),
      (err) => isGitMirrorError(err, 'CONFIG_INVALID') && !err.message.includes('s3cr3t'),
    );
  });

  it('hands credentials to git only through the environment of one process', () => {
    const env = gitEnvironment({ credentials: { username: 'u', password: 'p4ss' } });
    assert.equal(env.GITMIRROR_GIT_PASSWORD, 'p4ss');
    assert.ok(
      !env.GIT_CONFIG_VALUE_1?.includes('p4ss'),
      'the helper reads the secret, it does not contain it',
    );
    assert.equal(gitEnvironment({}).GITMIRROR_GIT_PASSWORD, undefined);
    assert.equal(
      gitEnvironment({}).GIT_CONFIG_GLOBAL,
      '/dev/null',
      'no user config (insteadOf loops) reaches mirror git',
    );
  });
});

describe('held credentials', () => {
  const token = { username: 'x-access-token', password: 'ghs_token' };
  const clock = new TestClock(Date.parse('2026-01-01T00:00:00Z'));
  const held = (expiresInMs?: number) =>
    new HeldCredentials(token, {
      clock,
      requestBoundMs: 600_000,
      expiresAt: expiresInMs === undefined ? undefined : clock.now() + expiresInMs,
    });

  it('hands out credentials without an expiry to any command', async () => {
    assert.deepEqual(await held().forCommand(24 * 3_600_000), token);
  });

  it('hands out a token only to commands whose requests all go out before it expires, with 10 s to spare', async () => {
    const ls = 30_000;
    assert.deepEqual(await held(40_000).forCommand(ls), token);
    await assert.rejects(held(39_999).forCommand(ls), (err) =>
      isGitMirrorError(err, 'CREDENTIALS_UNAVAILABLE'),
    );
    // A clone's timeout is an hour, but its requests are sent before the pack streams: the
    // request bound (GITMIRROR_FETCH_TIMEOUT, 10 min here) is what the token must outlast.
    assert.deepEqual(await held(610_000).forCommand(3_600_000), token);
    await assert.rejects(
      held(609_999).forCommand(3_600_000),
      /expires in 610s, before a command that may send requests for 610s/,
    );
    await assert.rejects(held(-5_000).forCommand(ls), /expired 5s ago/);
  });

  it('never puts the token in its error', async () => {
    await assert.rejects(held(0).forCommand(1000), (err: Error) => !err.message.includes('ghs_token'));
  });
});
