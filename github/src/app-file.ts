import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GITHUB_APP_KEYS, type GitHubApp, gitHostOf, parseGitHubApp } from './app.ts';
import { GitHubError } from './errors.ts';

/** A GitHub App for a standalone sidecar, and the git host its tokens are for. */
export interface AppFromFile {
  app: GitHubApp;
  /** `github.com` for api.github.com, the server's host for GitHub Enterprise Server. */
  gitHost: string;
}

/**
 * Reads the same keys a GitMirror's Secret holds (`githubAppID`, `githubAppInstallationID`,
 * `githubAppPrivateKey`, optionally `githubAppBaseURL`) from either a JSON file with those
 * keys, or a directory with one file per key, which is what mounting that Secret as a volume
 * gives. Errors name the path and the key, never a value.
 */
export async function loadGitHubAppFile(path: string): Promise<AppFromFile> {
  const where = `GitHub App file ${path}`;
  let data: Record<string, string | undefined>;
  try {
    data = (await stat(path)).isDirectory()
      ? await readKeyDirectory(path)
      : parseJson(await readFile(path, 'utf8'), where);
  } catch (err) {
    if (err instanceof GitHubError) throw err;
    throw new GitHubError(
      'GITHUB_APP_INVALID',
      `cannot read ${where}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  const app = parseGitHubApp(data, where);
  return { app, gitHost: gitHostOf(app.baseUrl) };
}

async function readKeyDirectory(dir: string): Promise<Record<string, string>> {
  const present = new Set(await readdir(dir));
  const data: Record<string, string> = {};
  for (const key of Object.values(GITHUB_APP_KEYS)) {
    if (present.has(key)) data[key] = (await readFile(join(dir, key), 'utf8')).trim();
  }
  return data;
}

function parseJson(text: string, where: string): Record<string, string | undefined> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The parser's message may quote the file, which holds the key.
    throw new GitHubError('GITHUB_APP_INVALID', `${where} is neither JSON nor a directory of key files`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GitHubError(
      'GITHUB_APP_INVALID',
      `${where} must hold a JSON object with the keys ${Object.values(GITHUB_APP_KEYS).join(', ')}`,
    );
  }
  const data: Record<string, string | undefined> = {};
  for (const [key, entry] of Object.entries(value)) {
    // Ids are often written as JSON numbers.
    data[key] = typeof entry === 'string' || typeof entry === 'number' ? String(entry) : undefined;
  }
  return data;
}
