import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { LfsObjectId } from '../../src/lfs/oid.ts';
import { git } from '../support/git-fixtures.ts';

/**
 * git-lfs in a throwaway HOME: its filters are installed into that HOME's config only, so the
 * machine's own git config is never touched.
 */
export async function lfsEnvironment(home: string): Promise<NodeJS.ProcessEnv> {
  await mkdir(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    HOME: home,
    GIT_CONFIG_GLOBAL: join(home, '.gitconfig'),
    GIT_LFS_SKIP_PUSH: undefined,
  };
  await git(['lfs', 'install', '--skip-repo'], { env });
  // Credentials for whatever tests hand out, from a file the test writes.
  await git(['config', '--global', 'credential.helper', `store --file=${join(home, 'credentials')}`], {
    env,
  });
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
