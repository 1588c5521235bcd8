import { lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';

/**
 * A path inside a container, resolved the way the container would see it, against the image's
 * root file system on the host: every symlink is followed *inside* the root (an absolute
 * target such as Debian's `/var/run -> /run` restarts at the root, and `..` never climbs above
 * it), so a mount target can never land on the host's own `/run`. Returns the resolved
 * absolute container path; components that do not exist are kept as they are (they will be
 * created as directories). What runc's securejoin does for mount destinations.
 */

const MAX_LINKS = 40;

export interface RootLookup {
  /** The symlink's target when `path` (a host path) is a symlink, else undefined. */
  readlink(path: string): string | undefined;
}

export const hostLookup: RootLookup = {
  readlink(path) {
    try {
      return lstatSync(path).isSymbolicLink() ? readlinkSync(path) : undefined;
    } catch {
      return undefined;
    }
  },
};

export function resolveInRoot(root: string, path: string, lookup: RootLookup = hostLookup): string {
  const pending = posix.normalize(`/${path}`).split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const target = lookup.readlink(posix.join(root, ...resolved, part));
    if (target === undefined) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw new Error(`${path}: too many levels of symbolic links in the image`);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return `/${resolved.join('/')}`;
}
