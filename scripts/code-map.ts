import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Holds the code to the code map at the top of docs/design.md: each folder, its one job and what
 * it may import. `scripts/test/code-map.test.ts` runs it in `npm test`. A new folder needs only a
 * row in that table.
 *
 * Folders are units of the map: under a `src` folder each direct subfolder is one unit and the
 * files directly in `src` another (`sidecar/src/http`, `sidecar/src`); anywhere else a file
 * belongs to the longest row that contains it (`core/test`, `core`, `e2e`). The rules:
 * 1. every TypeScript file belongs to a row;
 * 2. an import from one unit into another is one its row allows (`*` in an entry matches any
 *    characters, `/` included: `sidecar/src/*` is every folder of the sidecar's source);
 * 3. no cycle between units, neither in the imports nor in what the map allows;
 * 4. production code (units under a `src` folder and whatever they import) never imports test
 *    code (a unit with a `test` folder in its path, `testing`, `e2e` or `bench`), whatever the
 *    map says.
 */

export interface MapRow {
  folder: string;
  job: string;
  /** Folder patterns; empty: npm packages and Node built-ins only. */
  mayImport: string[];
}

export interface SourceFile {
  /** Repository-relative, `/`-separated. */
  path: string;
  text: string;
}

export interface Violation {
  rule: 'unmapped' | 'forbidden' | 'cycle' | 'test-code';
  message: string;
}

const HEADING = /^## Code map\s*$/m;
const TEST_CODE = /(^|\/)test(\/|$)|^testing$|^e2e$|^bench$/;

/** The rows of the first table under `## Code map`. */
export function parseCodeMap(markdown: string): MapRow[] {
  const start = markdown.search(HEADING);
  if (start < 0) throw new Error('no "## Code map" section');
  const section = markdown.slice(start).split(/\n## /)[0]!;
  const rows = section
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
  if (rows.length < 3) throw new Error('the code map has no table');
  return rows.slice(2).map(([folder = '', job = '', imports = '']) => ({
    folder: folder.replace(/`/g, '').replace(/\/$/, ''),
    job,
    mayImport: [...imports.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\/$/, '')),
  }));
}

/** Repository-relative targets of a file's relative imports (static, dynamic, `new URL(…)`). */
export function importsOf(file: SourceFile): string[] {
  const specifiers = [
    ...file.text.matchAll(/^(?:import|export)\s[^;]*?\sfrom\s*['"](\.[^'"]+)['"]/gm),
    ...file.text.matchAll(/^import\s*['"](\.[^'"]+)['"]/gm),
    ...file.text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g),
    ...file.text.matchAll(/\bnew URL\(\s*['"](\.[^'"]+\.ts)['"]\s*,\s*import\.meta\.url/g),
  ].map((m) => m[1]!);
  return specifiers.map((s) => posix.normalize(posix.join(posix.dirname(file.path), s)));
}

export function unitOf(path: string, rows: readonly MapRow[]): string | undefined {
  const parts = path.split('/');
  const src = parts.indexOf('src');
  if (src >= 0) {
    const unit = parts.slice(0, parts.length - 1 > src + 1 ? src + 2 : src + 1).join('/');
    return rows.some((r) => r.folder === unit) ? unit : undefined;
  }
  return rows
    .map((r) => r.folder)
    .filter((f) => path.startsWith(`${f}/`))
    .sort((a, b) => b.length - a.length)[0];
}

function allows(row: MapRow, unit: string): boolean {
  return row.mayImport.some((pattern) => {
    const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
    return new RegExp(`^${escaped}$`).test(unit);
  });
}

/** Strongly connected groups of more than one unit (Tarjan). */
function cycles(edges: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const group: string[] = [];
    for (let w = stack.pop(); w !== undefined; w = w === v ? undefined : stack.pop()) group.push(w);
    if (group.length > 1) found.push(group.sort());
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

function addEdge(edges: Map<string, Set<string>>, from: string, to: string): void {
  const set = edges.get(from) ?? new Set<string>();
  set.add(to);
  edges.set(from, set);
}

/** Everything in `files` that breaks the map's rules; empty when the code follows the map. */
export function checkCodeMap(rows: readonly MapRow[], files: readonly SourceFile[]): Violation[] {
  const violations: Violation[] = [];
  const rowOf = new Map(rows.map((r) => [r.folder, r]));
  const imports = new Map<string, Set<string>>();
  const example = new Map<string, string>();
  for (const file of files) {
    const from = unitOf(file.path, rows);
    if (!from) {
      violations.push({ rule: 'unmapped', message: `${file.path}: its folder has no row in the code map` });
      continue;
    }
    for (const target of importsOf(file)) {
      const to = unitOf(target, rows);
      if (to === undefined || to === from) continue;
      addEdge(imports, from, to);
      example.set(`${from} -> ${to}`, `${file.path} imports ${target}`);
      if (!allows(rowOf.get(from)!, to))
        violations.push({
          rule: 'forbidden',
          message: `${file.path} imports ${target}: ${from} may not import ${to}`,
        });
    }
  }
  for (const group of cycles(imports)) {
    const inside = [...example].filter(([edge]) =>
      group.some((a) => group.some((b) => edge === `${a} -> ${b}`)),
    );
    violations.push({
      rule: 'cycle',
      message: `folders import each other: ${group.join(', ')} (${inside.map(([, why]) => why).join('; ')})`,
    });
  }
  const units = [...new Set([...rowOf.keys()])];
  const allowed = new Map<string, Set<string>>();
  for (const row of rows)
    for (const u of units) if (u !== row.folder && allows(row, u)) addEdge(allowed, row.folder, u);
  for (const group of cycles(allowed))
    violations.push({
      rule: 'cycle',
      message: `the code map lets these folders import each other: ${group.join(', ')}`,
    });
  violations.push(...testCodeImports(imports, example));
  return violations;
}

/** Rule 4: from the units under `src`, follow the imports; nothing reached may be test code. */
function testCodeImports(
  imports: ReadonlyMap<string, ReadonlySet<string>>,
  example: ReadonlyMap<string, string>,
) {
  const production = new Set([...imports.keys()].filter((u) => u.split('/').includes('src')));
  for (const unit of production) for (const to of imports.get(unit) ?? []) production.add(to);
  const violations: Violation[] = [];
  for (const unit of production) {
    if (TEST_CODE.test(unit)) continue;
    for (const to of imports.get(unit) ?? []) {
      if (TEST_CODE.test(to))
        violations.push({
          rule: 'test-code',
          message: `production code imports test code: ${example.get(`${unit} -> ${to}`)}`,
        });
    }
  }
  return violations;
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every TypeScript file of the repository outside node_modules and dot-folders. */
export function repositoryFiles(root = ROOT): SourceFile[] {
  const files: SourceFile[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts'))
        files.push({ path: relative(root, full).split('\\').join('/'), text: readFileSync(full, 'utf8') });
    }
  };
  walk(root);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

export function repositoryCodeMap(root = ROOT): MapRow[] {
  return parseCodeMap(readFileSync(join(root, 'docs/design.md'), 'utf8'));
}
