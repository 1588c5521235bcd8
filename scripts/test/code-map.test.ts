import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkCodeMap,
  type MapRow,
  parseCodeMap,
  repositoryCodeMap,
  repositoryFiles,
  type SourceFile,
} from '../code-map.ts';

const MAP = `# A project

## Code map

| folder | its one job | may import |
|---|---|---|
| \`core\` | the contract | — |
| \`app/src\` | entry | \`core\`, \`app/src/*\` |
| \`app/src/low\` | the bottom layer | \`core\` |
| \`app/src/high\` | the top layer | \`core\`, \`app/src/low\` |
| \`app/test\` | tests | \`core\`, \`app/src/*\` |
| \`other/src/a\` | one side | \`core\` |

## Next section

| not | the | map |
|---|---|---|
| \`x\` | y | \`z\` |
`;

const file = (path: string, ...imports: string[]): SourceFile => ({
  path,
  text: `${imports.map((i, n) => `import { x${n} } from '${i}';`).join('\n')}\nexport const y = 1;\n`,
});

/** A tree that follows the map. */
const good: SourceFile[] = [
  file('core/ids.ts'),
  file('app/src/main.ts', './high/top.ts', '../../core/ids.ts'),
  file('app/src/high/top.ts', '../low/bottom.ts'),
  file('app/src/low/bottom.ts', '../../../core/ids.ts'),
  file('app/test/top.test.ts', '../src/high/top.ts'),
  file('other/src/a/a.ts', '../../../core/ids.ts'),
];

function rules(files: SourceFile[], rows: MapRow[] = parseCodeMap(MAP)) {
  return checkCodeMap(rows, files).map((v) => v.rule);
}

describe('the code map check', () => {
  test('reads the rows of the first table under "## Code map" only', () => {
    const rows = parseCodeMap(MAP);
    assert.deepEqual(
      rows.map((r) => r.folder),
      ['core', 'app/src', 'app/src/low', 'app/src/high', 'app/test', 'other/src/a'],
    );
    assert.deepEqual(rows[0]?.mayImport, []);
    assert.deepEqual(rows[3]?.mayImport, ['core', 'app/src/low']);
  });

  test('passes a tree that follows the map', () => {
    assert.deepEqual(checkCodeMap(parseCodeMap(MAP), good), []);
  });

  test('fails an import the map does not allow, naming the file', () => {
    const found = checkCodeMap(parseCodeMap(MAP), [
      ...good,
      file('app/src/low/leak.ts', '../../../other/src/a/a.ts'),
    ]);
    assert.deepEqual(
      found.map((v) => v.rule),
      ['forbidden'],
    );
    assert.match(
      found[0]!.message,
      /app\/src\/low\/leak\.ts imports other\/src\/a\/a\.ts: app\/src\/low may not import other\/src\/a/,
    );
  });

  test('fails a cycle between folders, even when the map allows each import', () => {
    const loose = parseCodeMap(MAP).map((r) =>
      r.folder === 'app/src/low' ? { ...r, mayImport: ['core', 'app/src/high'] } : r,
    );
    const found = rules([...good, file('app/src/low/back.ts', '../high/top.ts')], loose);
    assert.deepEqual(found.sort(), ['cycle', 'cycle'], 'one in the code, one in the map');
  });

  test('fails production code that imports test code, whatever the map allows', () => {
    const careless = parseCodeMap(MAP).map((r) =>
      r.folder === 'app/src/low' ? { ...r, mayImport: ['core', 'app/test'] } : r,
    );
    const found = rules([...good, file('app/src/low/fixture.ts', '../../test/top.test.ts')], careless);
    assert.ok(found.includes('test-code'), found.join());
  });

  test('fails a file in a folder that has no row', () => {
    assert.deepEqual(rules([...good, file('app/src/new/thing.ts')]), ['unmapped']);
    assert.deepEqual(rules([...good, file('tools/x.ts')]), ['unmapped']);
  });

  test('sees dynamic imports, re-exports and worker URLs', () => {
    const sneaky: SourceFile = {
      path: 'app/src/low/sneaky.ts',
      text: [
        "export { a } from '../high/top.ts';",
        "const m = await import('../high/top.ts');",
        "new Worker(new URL('../high/top.ts', import.meta.url));",
      ].join('\n'),
    };
    assert.deepEqual(rules([...good, sneaky]), ['forbidden', 'forbidden', 'forbidden', 'cycle']);
  });
});

describe('the repository', () => {
  const rows = repositoryCodeMap();

  test('docs/design.md opens with the code map', () => {
    const folders = rows.map((r) => r.folder);
    for (const folder of ['core', 'core/test', 'sidecar/src/mirrors', 'operator/src/runtime', 'e2e', 'bench'])
      assert.ok(folders.includes(folder), folder);
    assert.equal(new Set(folders).size, folders.length, 'one row per folder');
  });

  test('follows its code map', () => {
    const violations = checkCodeMap(rows, repositoryFiles());
    assert.deepEqual(
      violations.map((v) => v.message),
      [],
    );
  });
});
