import { ensureDebianPackages, type PackageMap } from '../../image/host-packages.ts';

/**
 * The host programs the cluster tests use, installed from Debian when missing (CI starts on a
 * fresh machine): `ip` for the pod network, util-linux's unshare/nsenter for the containers,
 * coreutils' mknod for their /dev, openssl for the PKI, git, git-lfs (the LFS client) and zstd
 * for the product itself, podman and runc to run the image under a real OCI runtime, skopeo to
 * measure it. Creating network namespaces needs root, which CI has.
 */

const PACKAGES: PackageMap = {
  ip: 'iproute2',
  unshare: 'util-linux',
  nsenter: 'util-linux',
  mknod: 'coreutils',
  openssl: 'openssl',
  git: 'git',
  'git-lfs': 'git-lfs',
  zstd: 'zstd',
  podman: 'podman',
  runc: 'runc',
  skopeo: 'skopeo',
};

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the cluster tests need root (network namespaces, bind mounts, chroot)');
  }
}

/** Installs what is missing; without root it leaves that to requireRoot()'s clear failure. */
export function ensureHostPrerequisites(): void {
  if (process.getuid?.() !== 0) return;
  ensureDebianPackages(PACKAGES, 'e2e');
}
