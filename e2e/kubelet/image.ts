import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildah, inspectImage, type ImageConfig as OciConfig } from '../../image/buildah.ts';
import { exec } from '../../image/exec.ts';

/**
 * The one image the test node "has": an image from the machine's containers storage (the
 * project's, built by `npm run image`), unpacked once per image ID into a directory that every
 * container of that image uses as the read-only lower layer of its root file system. Its
 * configuration (ENTRYPOINT, CMD, ENV, WORKDIR, USER) is the image's own, as a runtime reads it.
 */

export interface ImageConfig {
  workdir: string;
  env: Record<string, string>;
  user?: { uid: number; gid: number };
  entrypoint: string[];
  cmd: string[];
}

export interface NodeImage {
  /** The reference it is stored under, e.g. `localhost/gitmirror:0.1.0`. */
  ref: string;
  /** Image ID (config digest, hex). */
  id: string;
  /** Its layers unpacked; never written to (containers get an overlay on top). */
  rootfs: string;
  config: ImageConfig;
}

export async function loadImage(ref: string, cacheDir: string): Promise<NodeImage> {
  const info = await inspectImage(ref);
  if (!info) throw new Error(`image ${ref} is not in local storage: build it with \`npm run image\``);
  const rootfs = await unpack(ref, info.id, join(cacheDir, 'rootfs', ref.replace(/[^\w.-]/g, '_')));
  return { ref, id: info.id, rootfs, config: await imageConfig(info.config, rootfs) };
}

/** `<dir>/<id>`, made from a mount of the image once; copies of the ref's older IDs are removed. */
async function unpack(ref: string, id: string, dir: string): Promise<string> {
  const target = join(dir, id);
  if (existsSync(target)) return target;
  await mkdir(dir, { recursive: true });
  for (const stale of await readdir(dir)) {
    if (!stale.startsWith('.')) await rm(join(dir, stale), { recursive: true, force: true });
  }
  const temp = await mkdtemp(join(dir, '.unpack-'));
  const container = (
    await buildah(['from', '--pull=never', '--name', `gitmirror-unpack-${process.pid}`, ref])
  ).trim();
  try {
    const mounted = (await buildah(['mount', container])).trim();
    await exec('cp', ['-a', `${mounted}/.`, temp], { timeoutMs: 10 * 60_000 });
    await rename(temp, target);
  } finally {
    await buildah(['rm', container]).catch(() => {});
    await rm(temp, { recursive: true, force: true });
  }
  return target;
}

async function imageConfig(config: OciConfig, rootfs: string): Promise<ImageConfig> {
  const env = Object.fromEntries(
    (config.Env ?? []).map((pair) => {
      const at = pair.indexOf('=');
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
  return {
    workdir: config.WorkingDir || '/',
    env,
    user: config.User ? await resolveUser(config.User, rootfs) : undefined,
    entrypoint: config.Entrypoint ?? [],
    cmd: config.Cmd ?? [],
  };
}

/** `uid[:gid]` or names, looked up in the image's own /etc/passwd and /etc/group. */
export async function resolveUser(spec: string, rootfs: string): Promise<{ uid: number; gid: number }> {
  const [user = '', group] = spec.split(':');
  const passwd = await table(join(rootfs, 'etc/passwd'));
  const entry = passwd.find((fields) => fields[0] === user || fields[2] === user);
  const uid = /^\d+$/.test(user) ? Number(user) : Number(entry?.[2] ?? Number.NaN);
  if (Number.isNaN(uid)) throw new Error(`USER ${spec}: no user ${user} in the image`);
  if (group === undefined) return { uid, gid: Number(entry?.[3] ?? 0) };
  if (/^\d+$/.test(group)) return { uid, gid: Number(group) };
  const gid = (await table(join(rootfs, 'etc/group'))).find((fields) => fields[0] === group)?.[2];
  if (gid === undefined) throw new Error(`USER ${spec}: no group ${group} in the image`);
  return { uid, gid: Number(gid) };
}

async function table(path: string): Promise<string[][]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(':'));
}

/** The kubelet's rule: `command` replaces ENTRYPOINT, `args` replaces CMD (and drops it when only `command` is set). */
export function commandLine(image: ImageConfig, command?: string[], args?: string[]): string[] {
  if (command && command.length > 0) return [...command, ...(args ?? [])];
  return [...image.entrypoint, ...(args ?? image.cmd)];
}

/** Whether a pod's `image` names this image: `gitmirror:0.1.0` is `localhost/gitmirror:0.1.0`. */
export function sameImage(a: string, b: string): boolean {
  const normal = (ref: string) => {
    const name = ref.replace(/^(localhost|docker\.io)\//, '');
    return /:[^/]+$/.test(name) || name.includes('@') ? name : `${name}:latest`;
  };
  return normal(a) === normal(b);
}
