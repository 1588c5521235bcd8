import { execFileSync } from 'node:child_process';

/**
 * Debian packages a build or the end-to-end suite needs on the host, installed with apt-get when
 * a command is missing: CI starts on a fresh machine. Without root it installs nothing and the
 * caller's own check fails with a clear message.
 */

/** command → the Debian package that provides it. */
export type PackageMap = Record<string, string>;

/** What `npm run image` needs: buildah builds, mmdebstrap makes the base's root file system. */
export const IMAGE_BUILD_PACKAGES: PackageMap = {
  buildah: 'buildah',
  mmdebstrap: 'mmdebstrap',
};

export function has(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function ensureDebianPackages(packages: PackageMap, who: string): void {
  const missing = [
    ...new Set(
      Object.keys(packages)
        .filter((command) => !has(command))
        .map((command) => packages[command]!),
    ),
  ];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`${who} needs ${missing.join(', ')}: install them with apt-get (as root)`);
  }
  console.error(`${who}: installing ${missing.join(', ')} with apt-get`);
  const options = {
    stdio: 'inherit' as const,
    timeout: 900_000,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  };
  execFileSync('apt-get', ['update', '-qq'], options);
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], options);
}
