import { parseRepoId, type RepoId } from '../../../core/repo-id.ts';

/**
 * `/{host}/{path}[.git]/info/lfs{/rest}` (the part after `/git`): the repository and what
 * follows `info/lfs`, or undefined when the path is not under an LFS endpoint. git-lfs always
 * asks at `{remote}.git/info/lfs`; only the last segment of a repository may end in `.git`,
 * so the first `.git/info/lfs/` ends the repository; without `.git` the first `/info/lfs/`.
 * The repository is checked as strictly as git's (BAD_REPO_PATH).
 */
export function parseLfsPath(pathname: string): { repo: RepoId; subpath: string } | undefined {
  const marker = pathname.indexOf('.git/info/lfs/');
  const at = marker >= 0 ? marker + '.git'.length : pathname.indexOf('/info/lfs/');
  if (at < 0) return undefined;
  return { repo: parseRepoId(pathname.slice(0, at)), subpath: pathname.slice(at + '/info/lfs'.length) };
}
