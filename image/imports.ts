import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, normalize, relative } from 'node:path';

/**
 * The repository files the programs in the image load: every module under the entry folders
 * and, transitively, every module they import by relative path (static `from`, dynamic
 * `import()`, and worker scripts named by `new URL('./x.ts', import.meta.url)`). Whatever
 * top-level folder appears here must be copied into the image, or the program fails there.
 */

export const PROGRAM_DIRS = ['sidecar/src', 'operator/src'];

const SPECIFIERS = [
  /\bfrom\s+'(\.{1,2}\/[^']+)'/g,
  /\bimport\s*\(\s*'(\.{1,2}\/[^']+)'\s*\)/g,
  /\bnew URL\(\s*'(\.{1,2}\/[^']+)'\s*,\s*import\.meta\.url\s*\)/g,
];

/** Every `.ts` file under the program folders, relative to `root`. */
export async function entryPoints(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const dir of PROGRAM_DIRS) {
    for (const entry of await readdir(join(root, dir), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith('.ts'))
        found.push(relative(root, join(entry.parentPath, entry.name)));
    }
  }
  return found;
}

/** `files` and everything they import by relative path, transitively; sorted, relative to `root`. */
export async function importClosure(root: string, files: string[]): Promise<string[]> {
  const seen = new Set<string>();
  const pending = [...files];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = await readFile(join(root, file), 'utf8');
    for (const pattern of SPECIFIERS) {
      for (const match of text.matchAll(pattern)) {
        const target = normalize(join(dirname(file), match[1]!));
        if (target.startsWith('..')) throw new Error(`${file} imports ${match[1]}, outside the repository`);
        pending.push(target);
      }
    }
  }
  return [...seen].sort();
}

/** The top-level folders (or files) of a set of repository paths. */
export function topLevel(paths: string[]): string[] {
  return [...new Set(paths.map((p) => p.split('/')[0]!))].sort();
}
