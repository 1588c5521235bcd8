import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Node as the official image gets it from the release tarball (bin/node, include/node, npm,
 * corepack), assembled from what npm can deliver here: the `node@24` dev dependency installs
 * the platform package `node-<os>-<arch>` (the release's binary, headers and man page, but not
 * npm or corepack), and npm and corepack come from the npm registry at the versions that Node
 * release bundles, read from the release's own changelog.
 */

export interface NodeDist {
  version: string;
  /** The platform package's directory: bin/node, include/node, share/. */
  dir: string;
  npmVersion: string;
  corepackVersion: string;
  /** The OpenSSL arch whose headers the official image keeps (node-gyp needs only its own). */
  opensslArch: string;
}

const OPENSSL_ARCHS: Record<string, string> = { x64: 'linux-x86_64', arm64: 'linux-aarch64' };

export async function findNodeDist(repoRoot: string, arch = process.arch): Promise<NodeDist> {
  const opensslArch = OPENSSL_ARCHS[arch];
  if (!opensslArch) throw new Error(`no Node stand-in for ${arch}: only ${Object.keys(OPENSSL_ARCHS)}`);
  const fromNode = createRequire(join(repoRoot, 'node_modules', 'node', 'package.json'));
  let manifest: string;
  try {
    manifest = fromNode.resolve(`node-linux-${arch}/package.json`);
  } catch {
    throw new Error(`node-linux-${arch} is not installed under node_modules/node: run \`npm ci\``);
  }
  const dir = dirname(manifest);
  const { version } = JSON.parse(await readFile(manifest, 'utf8')) as { version: string };
  const bundled = bundledVersions(await readFile(join(dir, 'CHANGELOG.md'), 'utf8'), version);
  return { version, dir, opensslArch, ...bundled };
}

/**
 * The npm and corepack versions a Node release bundles: the newest "upgrade npm to X" and
 * "update corepack to Y" entries in the changelog at or below that release. A changelog lists
 * releases newest first, each under an `<a id="24.21.0"></a>` anchor.
 */
export function bundledVersions(
  changelog: string,
  version: string,
): { npmVersion: string; corepackVersion: string } {
  const start = changelog.indexOf(`<a id="${version}"></a>`);
  if (start < 0) throw new Error(`Node's changelog has no entry for ${version}`);
  const since = changelog.slice(start);
  const find = (pattern: RegExp, what: string) => {
    const match = pattern.exec(since);
    if (!match) throw new Error(`Node's changelog names no ${what} version at or below ${version}`);
    return match[1]!;
  };
  return {
    npmVersion: find(/\*\*deps\*\*: (?:upgrade|update) npm to (\d+\.\d+\.\d+)\b/, 'npm'),
    corepackVersion: find(/\*\*deps\*\*: (?:upgrade|update) corepack to (\d+\.\d+\.\d+)\b/, 'corepack'),
  };
}
