import { execFileSync } from 'node:child_process';

/**
 * The host programs the cluster tests use, installed from Debian when missing (CI starts on a
 * fresh machine): `ip` for the pod network, util-linux's unshare/nsenter/setpriv for the
 * containers, openssl for the PKI, git and zstd for the product itself. Creating network
 * namespaces needs root, which CI has.
 */

const PACKAGES: Record<string, string> = {
  ip: 'iproute2',
  unshare: 'util-linux',
  nsenter: 'util-linux',
  setpriv: 'util-linux',
  chroot: 'coreutils',
  openssl: 'openssl',
  git: 'git',
  zstd: 'zstd',
};

function has(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the cluster tests need root (network namespaces, bind mounts, chroot)');
  }
}

/** Installs what is missing; without root it leaves that to requireRoot()'s clear failure. */
export function ensureHostPrerequisites(): void {
  if (process.getuid?.() !== 0) return;
  const missing = [
    ...new Set(
      Object.keys(PACKAGES)
        .filter((c) => !has(c))
        .map((c) => PACKAGES[c]!),
    ),
  ];
  if (missing.length === 0) return;
  console.error(`e2e: installing ${missing.join(', ')} with apt-get`);
  const options = {
    stdio: 'inherit' as const,
    timeout: 600_000,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  };
  execFileSync('apt-get', ['update', '-qq'], options);
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], options);
}
