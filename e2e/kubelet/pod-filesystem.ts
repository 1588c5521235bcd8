import { posix } from 'node:path';

/**
 * What a container can see of the host, read from its mount table (`/proc/<pid>/mountinfo`):
 * a file reaches a container only through a mount, so a container whose every mount is its
 * image's overlay, a fresh kernel file system (proc, sysfs, its own /dev) or a bind of a dir
 * under its pod's dir (volumes, /etc/hosts) holds nothing of the host outside its volumes.
 * Anything else (the checkout, the host's /usr, a host /dev) is reported.
 */

export interface MountEntry {
  /** `major:minor` of the file system the mount shows. */
  device: string;
  /** The mounted dir within that file system (for a bind: the source's path in it). */
  root: string;
  /** Where it is mounted, as the reading process sees paths (the container's root is `/`). */
  mountPoint: string;
  fsType: string;
  source: string;
  superOptions: string;
}

export function parseMountinfo(text: string): MountEntry[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [before = '', after = ''] = line.split(' - ');
      const fields = before.split(' ');
      const [fsType = '', source = '', superOptions = ''] = after.split(' ');
      return {
        device: fields[2] ?? '',
        root: unoctal(fields[3] ?? ''),
        mountPoint: unoctal(fields[4] ?? ''),
        fsType,
        source: unoctal(source),
        superOptions,
      };
    });
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unoctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** Kernel file systems a runtime creates fresh for a container: nothing of the host's files in them. */
const FRESH: Record<string, string[]> = {
  proc: ['/proc'],
  sysfs: ['/sys'],
  tmpfs: ['/dev', '/dev/shm'],
  devpts: ['/dev/pts'],
};

export interface AllowedSources {
  /** The image's unpacked root file system (the overlay's lower layer). */
  imageRootfs: string;
  /** The pod's dir on the host: volumes, its /etc files and the containers' writable layers. */
  podDir: string;
  /** The host's own mount table, to turn a bind's (device, root) into a host path. */
  hostMounts: MountEntry[];
}

/** Each mount that can show the container something of the host, described; empty when none. */
export function foreignMounts(container: MountEntry[], allowed: AllowedSources): string[] {
  const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
  const foreign: string[] = [];
  for (const mount of container) {
    if (mount.mountPoint === '/') {
      const lower = /(?:^|,)lowerdir=([^,]+)/.exec(mount.superOptions)?.[1];
      const upper = /(?:^|,)upperdir=([^,]+)/.exec(mount.superOptions)?.[1] ?? '';
      const ok = mount.fsType === 'overlay' && lower === allowed.imageRootfs && within(upper, allowed.podDir);
      if (!ok) foreign.push(`/ is ${mount.fsType} ${mount.superOptions}, not the image's overlay`);
      continue;
    }
    if (FRESH[mount.fsType]?.includes(mount.mountPoint) && mount.root === '/') continue;
    const host = hostPathOf(mount, allowed.hostMounts);
    if (host !== undefined && within(host, allowed.podDir)) continue;
    foreign.push(`${mount.mountPoint} shows ${host ?? `${mount.fsType} ${mount.source}:${mount.root}`}`);
  }
  return foreign;
}

/** The host path a bind mount shows, through the host mount of the same device that holds it. */
export function hostPathOf(mount: MountEntry, hostMounts: MountEntry[]): string | undefined {
  const candidates = hostMounts
    .filter(
      (h) =>
        h.device === mount.device &&
        (mount.root === h.root || mount.root.startsWith(`${h.root}/`) || h.root === '/'),
    )
    .sort((a, b) => b.root.length - a.root.length);
  const host = candidates[0];
  if (!host) return undefined;
  const rest = host.root === '/' ? mount.root : mount.root.slice(host.root.length);
  return posix.join(host.mountPoint, rest).replace(/(.)\/$/, '$1');
}
