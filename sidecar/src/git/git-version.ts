/**
 * The version of the git the sidecar runs, so that mirror settings which only some versions
 * understand follow the git actually present (the image's, not the one a developer has).
 */

export interface GitVersion {
  major: number;
  minor: number;
  patch: number;
  /** As git prints it: `2.39.5`. */
  text: string;
}

/** `git version 2.39.5` (also `2.47.3.windows.1`, `2.50.0.rc1`) → 2.39.5. */
export function parseGitVersion(output: string): GitVersion {
  const match = /^git version (\d+)\.(\d+)(?:\.(\d+))?/.exec(output.trim());
  if (!match) throw new Error(`not a git version: ${JSON.stringify(output.trim().slice(0, 80))}`);
  const [major, minor, patch] = [match[1], match[2], match[3] ?? '0'].map(Number) as [number, number, number];
  return { major, minor, patch, text: `${major}.${minor}.${patch}` };
}

/** Whether `version` is at least `major.minor`. */
export function atLeast(version: GitVersion, [major, minor]: readonly [number, number]): boolean {
  return version.major > major || (version.major === major && version.minor >= minor);
}
