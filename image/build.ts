import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBaseImage } from './base.ts';
import { buildah, type ImageInfo, ISOLATION, inspectImage, removeImage } from './buildah.ts';
import { contextDigest } from './context.ts';
import { exec } from './exec.ts';
import { ensureDebianPackages, IMAGE_BUILD_PACKAGES } from './host-packages.ts';
import { registrySecrets } from './registry-access.ts';

/**
 * `npm run image`: the image users deploy, built from the project's own Dockerfile into this
 * machine's containers storage as `localhost/gitmirror:<package.json version>`, without Docker:
 * buildah builds the Dockerfile unchanged on top of a local stand-in for `node:24-slim`
 * (base.ts), with the registry access of registry-access.ts mounted into the one step that
 * needs it. A build whose inputs (context, Dockerfile, base) are those of the image already
 * tagged is skipped (context.ts); after a change, buildah's layer cache rebuilds only the
 * steps from the first changed one on.
 *
 *   npm run image                # build (or find) base and image; prints the image's ref and id
 *   npm run image -- --refresh   # rebuild the base with today's Debian packages
 */

export const REPO_ROOT = resolve(import.meta.dirname, '..');
const BUILD_TIMEOUT_MS = 30 * 60_000;

export interface BuiltImage extends ImageInfo {
  ref: string;
  baseRef: string;
  nodeVersion: string;
}

export function imageCacheDir(): string {
  const dir = resolve(process.env.GITMIRROR_IMAGE_CACHE || join(homedir(), '.cache', 'gitmirror-image'));
  const inside = relative(REPO_ROOT, dir);
  if (!inside.startsWith('..') && !inside.startsWith('/'))
    throw new Error(
      `the image cache ${dir} must be outside the repository (it would enter the build context)`,
    );
  return dir;
}

export async function imageRef(): Promise<string> {
  const { version } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  return `localhost/gitmirror:${version}`;
}

export async function ensureImage(
  options: { refresh?: boolean; log?: (message: string) => void } = {},
): Promise<BuiltImage> {
  const log = options.log ?? ((message: string) => console.error(message));
  ensureDebianPackages(IMAGE_BUILD_PACKAGES, 'image');
  const cacheDir = imageCacheDir();
  const base = await ensureBaseImage({ repoRoot: REPO_ROOT, cacheDir, refresh: options.refresh, log });
  const ref = await imageRef();
  const secrets = await buildSecrets(cacheDir);
  const dockerfile = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8');
  // Which files are mounted as secrets is an input; their content never enters the image.
  const digest = await contextDigest(REPO_ROOT, [dockerfile, base.id, ...secrets]);
  const records = new BuildRecords(join(cacheDir, 'builds.json'));
  const previous = await inspectImage(ref);
  if (previous && !options.refresh && (await records.get(ref)) === `${digest} ${previous.id}`) {
    return { ...previous, ref, baseRef: base.ref, nodeVersion: base.nodeVersion };
  }
  const started = Date.now();
  await buildah(
    [
      'bud',
      ...ISOLATION,
      '--layers',
      '--pull=never',
      '--build-arg',
      `NODE_IMAGE=${base.ref}`,
      ...secrets.flatMap((secret) => ['--secret', secret]),
      '-t',
      ref,
      '-f',
      join(REPO_ROOT, 'Dockerfile'),
      REPO_ROOT,
    ],
    { timeoutMs: BUILD_TIMEOUT_MS, echo: 'image: ' },
  );
  const info = await inspectImage(ref);
  if (!info) throw new Error(`${ref} is not in local storage after its build`);
  await records.set(ref, `${digest} ${info.id}`);
  if (previous && previous.id !== info.id) await removeImage(previous.id);
  log(`image: ${ref} (${info.id.slice(0, 12)}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { ...info, ref, baseRef: base.ref, nodeVersion: base.nodeVersion };
}

/** What was last built from which inputs, by image ref: `<inputs digest> <image id>`. */
class BuildRecords {
  private readonly file: string;
  constructor(file: string) {
    this.file = file;
  }
  private async all(): Promise<Record<string, string>> {
    return JSON.parse(await readFile(this.file, 'utf8').catch(() => '{}')) as Record<string, string>;
  }
  async get(ref: string): Promise<string | undefined> {
    return (await this.all())[ref];
  }
  async set(ref: string, value: string): Promise<void> {
    await writeFile(this.file, JSON.stringify({ ...(await this.all()), [ref]: value }, null, 2));
  }
}

/** `id=...,src=...` for each secret the Dockerfile mounts. */
async function buildSecrets(cacheDir: string): Promise<string[]> {
  const npmConfig = async (key: string) =>
    (await exec('npm', ['config', 'get', key], { timeoutMs: 60_000, cwd: cacheDir })).trim();
  const secrets = registrySecrets({
    npmCafile: await npmConfig('cafile'),
    npmUserconfig: await npmConfig('userconfig'),
    env: process.env,
    exists: existsSync,
  });
  // buildah refuses a secret mount without a source: an absent one is an empty file.
  const empty = join(cacheDir, 'empty-secret');
  await mkdir(cacheDir, { recursive: true });
  await writeFile(empty, '');
  return (['npm-ca', 'npmrc'] as const).map(
    (id) => `id=${id},src=${secrets.find((s) => s.id === id)?.src ?? empty}`,
  );
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { refresh: { type: 'boolean', default: false } } });
  const image = await ensureImage({ refresh: values.refresh });
  console.log(`${image.ref} ${image.id}`);
}
