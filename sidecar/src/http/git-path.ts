import { parseRepoId, type RepoId } from '../../../core/repo-id.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

export type GitAction = 'info-refs' | 'upload-pack' | 'receive-pack' | 'snapshot';

const SUFFIXES: [string, GitAction][] = [
  ['/info/refs', 'info-refs'],
  ['/git-upload-pack', 'upload-pack'],
  ['/git-receive-pack', 'receive-pack'],
  ['/snapshot.tar.zst', 'snapshot'],
];

/**
 * Splits `/{host}/{path}[.git]/{suffix}` (the part after `/git`) into the repository and
 * what is asked of it. Anything that is not one of the known git endpoints is a 404:
 * the cache is not a general proxy.
 */
export function parseGitPath(pathname: string): { repo: RepoId; action: GitAction } {
  for (const [suffix, action] of SUFFIXES) {
    if (pathname.endsWith(suffix)) {
      return { repo: parseRepoId(pathname.slice(0, -suffix.length)), action };
    }
  }
  throw new GitMirrorError(
    'NOT_FOUND',
    'not a git endpoint: expected info/refs, git-upload-pack, git-receive-pack or snapshot.tar.zst',
  );
}
