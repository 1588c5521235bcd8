import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Environment for test git commands: no user config, fixed identity, deterministic dates. */
export const GIT_ENV: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: tmpdir(),
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_TERMINAL_PROMPT: '0',
};

export async function git(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<string> {
  const child = exec('git', args, {
    cwd: options.cwd,
    env: { ...GIT_ENV, ...options.env },
    maxBuffer: 256 * 1024 * 1024,
  });
  if (options.input !== undefined) child.child.stdin?.end(options.input);
  const { stdout } = await child;
  return stdout;
}

export async function tempDir(prefix = 'gitmirror-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/**
 * A bare upstream repository `root/<name>.git` with `commits` commits on main, a second
 * branch, a tag and a few files per commit, built through a work tree like a user would.
 */
export async function createUpstreamRepo(
  root: string,
  name: string,
  commits = 5,
): Promise<{ bare: string; work: string }> {
  const bare = join(root, `${name}.git`);
  const work = join(root, `${name}-work`);
  await mkdir(join(bare, '..'), { recursive: true });
  await git(['init', '--bare', '--initial-branch=main', bare]);
  await git(['config', 'http.receivepack', 'true'], { cwd: bare });
  await git(['config', 'uploadpack.allowFilter', 'true'], { cwd: bare });
  await git(['clone', bare, work]);
  await git(['checkout', '-b', 'main'], { cwd: work }).catch(() => '');
  for (let i = 0; i < commits; i++)
    await addCommit(work, `file-${i % 3}.txt`, `content ${i}\n`.repeat(50 + i));
  await git(['tag', '-a', 'v1.0', '-m', 'release'], { cwd: work });
  await git(['branch', 'feature'], { cwd: work });
  await git(['push', '--quiet', 'origin', 'main', 'feature', 'v1.0'], { cwd: work });
  return { bare, work };
}

export async function addCommit(
  work: string,
  file: string,
  content: string,
  message = `change ${file}`,
): Promise<string> {
  await writeFile(join(work, file), content);
  await git(['add', file], { cwd: work });
  await git(['commit', '--quiet', '-m', message], { cwd: work });
  return (await git(['rev-parse', 'HEAD'], { cwd: work })).trim();
}

/** `for-each-ref` output of a repository: equal strings mean equal refs. */
export async function refsOf(repo: string, pattern = 'refs/'): Promise<string> {
  return git(['for-each-ref', '--format=%(objectname) %(refname)', pattern], { cwd: repo });
}

/** Every object id reachable in a repository, sorted. */
export async function objectsOf(repo: string): Promise<string[]> {
  const out = await git(['cat-file', '--batch-all-objects', '--batch-check=%(objectname)'], { cwd: repo });
  return out.split('\n').filter(Boolean).sort();
}
