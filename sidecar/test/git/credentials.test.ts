import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { CredentialsFile } from '../../src/git/credentials.ts';
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
