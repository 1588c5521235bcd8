import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { buildah, ISOLATION, inspectImage, removeImage } from './buildah.ts';
import { exec } from './exec.ts';
import { findNodeDist, type NodeDist } from './node-dist.ts';

/**
 * A stand-in for the official `node:24-slim`, built where no registry is reachable, so that the
 * project's Dockerfile builds unchanged (`--build-arg NODE_IMAGE=localhost/node:24-slim`).
 *
 * What it matches (nodejs/docker-node's 24/bookworm-slim): Debian 12 "bookworm", because Node
 * 24's images keep bookworm as their default Debian (trixie is the default only from Node 26 on);
 * minbase without docs, man pages and locales, like debian:bookworm-slim; Node's release laid
 * out in /usr/local (bin/node, include/node with only this arch's OpenSSL headers, npm and
 * corepack in lib/node_modules with their bin links, `nodejs`); the `node` user and group 1000;
 * `PATH`, `NODE_VERSION`, `ENTRYPOINT ["docker-entrypoint.sh"]`, `CMD ["node"]`. Not there:
 * yarn (the official image's /opt/yarn-v1.22.22), which nothing here uses.
 *
 * Cached by a digest of its inputs (this recipe, the Node binary, npm's and corepack's
 * versions), kept as a label on the image: a rebuild with the same inputs is a lookup. Debian's
 * packages are whatever the suite has on the day it is built; `--refresh` rebuilds for updates.
 */

export const BASE_REF = 'localhost/node:24-slim';
export const DEBIAN_SUITE = 'bookworm';
const INPUTS_LABEL = 'dev.gitmirror.base-inputs';
const HERE = join(import.meta.dirname, 'base');
const MIRRORS = [
  `deb http://deb.debian.org/debian ${DEBIAN_SUITE} main`,
  `deb http://deb.debian.org/debian ${DEBIAN_SUITE}-updates main`,
  `deb http://deb.debian.org/debian-security ${DEBIAN_SUITE}-security main`,
];
/** debian:*-slim's dpkg filters; written into the image, so later apt installs obey them too. */
const SLIM = [
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/groff/*',
  'path-exclude=/usr/share/linda/*',
  'path-exclude=/usr/share/lintian/*',
  'path-exclude=/usr/share/locale/*',
];
const MMDEBSTRAP_ARGS = [
  '--variant=minbase',
  // Merged /usr set up by mmdebstrap itself, as Debian's images have it, instead of by the
  // usrmerge package, which would pull perl (~40 MB) into the image.
  '--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr',
  '--format=tar',
  '--aptopt=Acquire::Languages "none"',
  ...SLIM.map((o) => `--dpkgopt=${o}`),
];

export interface BaseImage {
  ref: string;
  id: string;
  nodeVersion: string;
  built: boolean;
}

export async function ensureBaseImage(options: {
  repoRoot: string;
  cacheDir: string;
  refresh?: boolean;
  log: (message: string) => void;
}): Promise<BaseImage> {
  const dist = await findNodeDist(options.repoRoot);
  const digest = await inputsDigest(dist);
  const existing = await inspectImage(BASE_REF);
  if (existing && existing.labels[INPUTS_LABEL] === digest && !options.refresh) {
    return { ref: BASE_REF, id: existing.id, nodeVersion: dist.version, built: false };
  }
  options.log(
    `base: building ${BASE_REF} (Debian ${DEBIAN_SUITE}, Node ${dist.version}, npm ${dist.npmVersion})`,
  );
  await mkdir(options.cacheDir, { recursive: true });
  const work = await mkdtemp(join(options.cacheDir, '.base-'));
  try {
    const context = join(work, 'context');
    await mkdir(context);
    await stageInputs(dist, join(work, 'inputs'));
    await rootfs(dist, join(work, 'inputs'), join(context, 'rootfs.tar'), options.log);
    await copyFile(join(HERE, 'Containerfile'), join(context, 'Containerfile'));
    await buildah(
      [
        'bud',
        ...ISOLATION,
        '--layers=false',
        '--pull=never',
        '--build-arg',
        `NODE_VERSION=${dist.version}`,
        '--label',
        `${INPUTS_LABEL}=${digest}`,
        '-t',
        BASE_REF,
        context,
      ],
      { timeoutMs: 10 * 60_000, echo: 'base: ' },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const built = await inspectImage(BASE_REF);
  if (!built) throw new Error(`${BASE_REF} is not in local storage after its build`);
  if (existing && existing.id !== built.id) await removeImage(existing.id);
  return { ref: BASE_REF, id: built.id, nodeVersion: dist.version, built: true };
}

/** The hook's inputs: Node's platform package, npm's and corepack's registry tarballs, the entrypoint. */
async function stageInputs(dist: NodeDist, dir: string): Promise<void> {
  await mkdir(dir);
  await symlink(dist.dir, join(dir, 'node'));
  await copyFile(join(HERE, 'docker-entrypoint.sh'), join(dir, 'docker-entrypoint.sh'));
  const packed = JSON.parse(
    await exec(
      'npm',
      [
        'pack',
        '--json',
        '--pack-destination',
        dir,
        `npm@${dist.npmVersion}`,
        `corepack@${dist.corepackVersion}`,
      ],
      { timeoutMs: 5 * 60_000 },
    ),
  ) as { name: string; filename: string }[];
  for (const { name, filename } of packed) await rename(join(dir, filename), join(dir, `${name}.tgz`));
}

async function rootfs(
  dist: NodeDist,
  inputs: string,
  output: string,
  log: (m: string) => void,
): Promise<void> {
  const started = Date.now();
  const hook = `sh ${join(HERE, 'customize.sh')} "$1" ${inputs} ${dist.opensslArch}`;
  await exec(
    'mmdebstrap',
    [...MMDEBSTRAP_ARGS, `--customize-hook=${hook}`, DEBIAN_SUITE, output, ...MIRRORS],
    {
      timeoutMs: 20 * 60_000,
      echo: 'base: mmdebstrap: ',
    },
  );
  log(`base: root file system in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/** Everything that decides the base's content except the day's Debian packages. */
async function inputsDigest(dist: NodeDist): Promise<string> {
  const hash = createHash('sha256');
  for (const file of ['Containerfile', 'customize.sh', 'docker-entrypoint.sh'])
    hash.update(await readFile(join(HERE, file)));
  hash.update(JSON.stringify({ MIRRORS, MMDEBSTRAP_ARGS, DEBIAN_SUITE, dist: { ...dist, dir: undefined } }));
  for await (const chunk of createReadStream(join(dist.dir, 'bin', 'node'))) hash.update(chunk as Buffer);
  return hash.digest('hex').slice(0, 16);
}
