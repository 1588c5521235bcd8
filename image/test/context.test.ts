import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { contextDigest, contextFiles, isIgnored, parseDockerignore } from '../context.ts';

describe('.dockerignore as the builder reads it', () => {
  const rules = parseDockerignore(
    [
      '# comment',
      '**/node_modules',
      '.git',
      '**/*.test.ts',
      'docs',
      '*.md',
      '!README.md',
      'sidecar/demo',
    ].join('\n'),
  );

  test('a pattern excludes the path and everything under it', () => {
    assert.ok(isIgnored('docs', rules));
    assert.ok(isIgnored('docs/design.md', rules));
    assert.ok(isIgnored('sidecar/demo/demo.ts', rules));
    assert.ok(!isIgnored('sidecar/src/main.ts', rules));
    assert.ok(!isIgnored('documents/x', rules), 'docs matches a whole name, not a prefix');
  });

  test('**/ matches at any depth, including the top; * stays within one name', () => {
    assert.ok(isIgnored('node_modules/x/index.js', rules));
    assert.ok(isIgnored('e2e/node_modules/x', rules));
    assert.ok(isIgnored('sidecar/test/a.test.ts', rules));
    assert.ok(isIgnored('CHANGES.md', rules));
    assert.ok(!isIgnored('charts/gitmirror/README.md.txt', rules));
    assert.ok(!isIgnored('charts/NOTES.md', rules), '*.md is anchored at the context root');
  });

  test('the last matching rule wins, so ! brings a file back', () => {
    assert.ok(!isIgnored('README.md', rules));
  });
});

describe('the build context digest', () => {
  test('changes with any file the build sees, and with nothing it ignores', async () => {
    const root = await mkdtemp(join(tmpdir(), 'gitmirror-context-'));
    try {
      await writeFile(join(root, '.dockerignore'), 'docs\n');
      await mkdir(join(root, 'src'));
      await mkdir(join(root, 'docs'));
      await writeFile(join(root, 'src/a.ts'), 'a');
      await writeFile(join(root, 'docs/x.md'), 'x');
      assert.deepEqual(await contextFiles(root), ['.dockerignore', 'src/a.ts']);
      const first = await contextDigest(root, ['FROM x']);
      await writeFile(join(root, 'docs/x.md'), 'changed');
      assert.equal(await contextDigest(root, ['FROM x']), first, 'an ignored file changed');
      assert.notEqual(await contextDigest(root, ['FROM y']), first, 'the Dockerfile changed');
      await writeFile(join(root, 'src/a.ts'), 'b');
      assert.notEqual(await contextDigest(root, ['FROM x']), first, 'a context file changed');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
