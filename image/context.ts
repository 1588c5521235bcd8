import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The Docker build context as the builder sees it: every file under the root that
 * `.dockerignore` does not exclude. Its digest (paths, modes, contents) plus the Dockerfile's
 * and the base image's identity decide the image, so a build whose digest matches the last
 * one's is skipped without asking buildah, which takes seconds more just to hash
 * node_modules for its layer cache.
 */

interface Rule {
  negate: boolean;
  regex: RegExp;
}

/** `.dockerignore` lines as rules: `#` comments, `*`, `?`, `**`, and `!` exceptions. */
export function parseDockerignore(text: string): Rule[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const negate = line.startsWith('!');
      const pattern = (negate ? line.slice(1) : line).replace(/^\/+|\/+$/g, '');
      return { negate, regex: globRegex(pattern) };
    });
}

function globRegex(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/';
      source += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/**
 * Whether a context path (`a/b/c`, relative, `/`-separated) is left out: the last rule that
 * matches the path or one of its parent directories decides, as in Docker.
 */
export function isIgnored(path: string, rules: Rule[]): boolean {
  const parts = path.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const rule of rules) {
    if (candidates.some((candidate) => rule.regex.test(candidate))) ignored = !rule.negate;
  }
  return ignored;
}

/** Files of the context, sorted, as paths relative to `root`. */
export async function contextFiles(root: string): Promise<string[]> {
  const rules = parseDockerignore(await readFile(join(root, '.dockerignore'), 'utf8').catch(() => ''));
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(join(root, dir), { withFileTypes: true })) {
      const path = dir ? `${dir}/${entry.name}` : entry.name;
      // An excluded directory may still hold an exception's file, so only rules decide, per path.
      if (entry.isDirectory()) {
        if (!isIgnored(path, rules) || rules.some((r) => r.negate)) await walk(path);
      } else if (!isIgnored(path, rules)) files.push(path);
    }
  };
  await walk('');
  return files.sort();
}

export async function contextDigest(root: string, extra: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const item of extra) hash.update(`${item}\0`);
  for (const path of await contextFiles(root)) {
    const full = join(root, path);
    const info = await stat(full).catch(() => undefined);
    const content = info?.isFile() ? await readFile(full) : await readlink(full).catch(() => '');
    hash.update(`${path}\0${info?.mode ?? 0}\0`);
    hash.update(content);
    hash.update('\0');
  }
  return hash.digest('hex');
}
