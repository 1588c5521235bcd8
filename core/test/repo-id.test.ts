import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isContractError } from '../errors.ts';
import { parseRepoId, repoIdFromUrl, upstreamUrl } from '../repo-id.ts';

describe('repository ids', () => {
  it('parses host and path, lower-cases the host and drops .git', () => {
    assert.deepEqual(parseRepoId('GitHub.com/Org/Repo.git'), {
      id: 'github.com/Org/Repo',
      host: 'github.com',
      path: 'Org/Repo',
    });
    assert.equal(parseRepoId('/gitlab.com/group/sub/project').id, 'gitlab.com/group/sub/project');
    assert.equal(parseRepoId('127.0.0.1:8080/org/.github').path, 'org/.github');
  });

  it('builds https upstreams, and http for configured hosts', () => {
    const repo = parseRepoId('example.com:3000/a/b');
    assert.equal(upstreamUrl(repo, new Set()), 'https://example.com:3000/a/b.git');
    assert.equal(upstreamUrl(repo, new Set(['example.com:3000'])), 'http://example.com:3000/a/b.git');
  });

  it('refuses credentials, queries and non-http schemes in upstream URLs', () => {
    for (const url of [
      'https://user:pw@github.com/a/b',
      'https://token@github.com/a/b',
      'ssh://github.com/a/b',
      'file:///etc/passwd',
      'https://github.com/a/b?x=1',
      'not a url',
    ]) {
      assert.throws(
        () => repoIdFromUrl(url),
        (err) => isContractError(err, 'BAD_REPO_PATH'),
        url,
      );
    }
  });

  it('refuses traversal in every encoding', () => {
    for (const raw of [
      'github.com/..',
      'github.com/a/../b',
      'github.com/%2e%2e/x',
      'github.com/a/%252e%252e',
      'github.com/a\\..\\b',
      'github.com/a/\0/b',
      '../etc/passwd',
      'github.com//x',
    ]) {
      assert.throws(
        () => parseRepoId(raw),
        (err) => isContractError(err, 'BAD_REPO_PATH'),
        raw,
      );
    }
  });
});
