import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { DataLayout } from '../../src/mirrors/data-layout.ts';
import { parseRepoId, repoIdFromUrl, upstreamUrl } from '../../src/mirrors/repo-id.ts';

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
        (err) => isGitMirrorError(err, 'BAD_REPO_PATH'),
        url,
      );
    }
  });

  it('maps every accepted id to a directory inside the mirrors dir (property)', () => {
    const layout = new DataLayout('/data');
    const segment = fc.stringMatching(/^[A-Za-z0-9._~%\\/-]{0,12}$/);
    fc.assert(
      fc.property(
        fc.constantFrom('github.com', 'a.b', 'x:1'),
        fc.array(segment, { minLength: 1, maxLength: 5 }),
        (host, parts) => {
          let repo: ReturnType<typeof parseRepoId>;
          try {
            repo = parseRepoId(`${host}/${parts.join('/')}`);
          } catch (err) {
            assert.ok(isGitMirrorError(err, 'BAD_REPO_PATH'));
            return;
          }
          const dir = resolve(layout.mirrorDir(repo));
          assert.ok(dir.startsWith(`${join('/data', 'mirrors')}/`), dir);
          assert.ok(!repo.path.split('/').some((s) => s === '..' || s === '.' || s === ''));
        },
      ),
      { numRuns: 2000 },
    );
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
        (err) => isGitMirrorError(err, 'BAD_REPO_PATH'),
        raw,
      );
    }
  });
});
