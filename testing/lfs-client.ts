import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { LfsObjectId } from '../sidecar/src/lfs/oid.ts';
import { GIT_ENV, git } from './git.ts';

/**
 * The whole environment of a git-lfs client in a throwaway HOME: filters installed into that
 * HOME's config only (the machine's own git config is never touched), a fixed identity, no
 * prompts, and credentials from `{home}/credentials` (git-credential-store format, empty at
 * first), which the test writes. Also used by the end-to-end suite and the benchmark.
 */
export async function lfsEnvironment(home: string): Promise<NodeJS.ProcessEnv> {
  await mkdir(home, { recursive: true });
  const env: NodeJS.ProcessEnv = { ...GIT_ENV, HOME: home, GIT_CONFIG_GLOBAL: join(home, '.gitconfig') };
  await git(['lfs', 'install', '--skip-repo'], { env });
  await git(['config', '--global', 'credential.helper', `store --file=${join(home, 'credentials')}`], {
    env,
  });
  await writeFile(join(home, 'credentials'), '');
  return env;
}

/** Writes `files` into a work tree tracked by LFS (`*.bin`), commits and returns each object's id. */
export async function commitLfsFiles(
  work: string,
  files: Record<string, Buffer>,
  env: NodeJS.ProcessEnv,
  message = 'add LFS files',
): Promise<Record<string, LfsObjectId>> {
  await git(['lfs', 'track', '*.bin'], { cwd: work, env });
  const ids: Record<string, LfsObjectId> = {};
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(work, name)), { recursive: true });
    await writeFile(join(work, name), content);
    ids[name] = { oid: createHash('sha256').update(content).digest('hex'), size: content.length };
  }
  await git(['add', '.gitattributes', ...Object.keys(files)], { cwd: work, env });
  await git(['commit', '--quiet', '-m', message], { cwd: work, env });
  return ids;
}
