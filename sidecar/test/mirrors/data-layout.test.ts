import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isContractError } from '../../../core/errors.ts';
import { parseRepoId } from '../../../core/repo-id.ts';
import { DataLayout } from '../../src/mirrors/data-layout.ts';

describe('the data layout of repository ids', () => {
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
            assert.ok(isContractError(err, 'BAD_REPO_PATH'));
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
});
