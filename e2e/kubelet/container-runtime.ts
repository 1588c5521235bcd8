import { readFileSync, statSync } from 'node:fs';
import { killGroup, type ManagedProcess, run, startProcess } from '../cluster/processes.ts';
import { resolveInRoot } from './rootfs-path.ts';

/**
 * Runs one container as a real process tree with the isolation the product depends on:
 * - the pod's network namespace (`ip netns exec`), so it listens on the pod IP;
 * - its own mount, UTS and PID namespaces (`unshare`): the process is PID 1, and when it
 *   exits the kernel kills everything it left behind, as a container runtime does;
 * - the image's root file system: an overlay with the unpacked image as its read-only lower
 *   layer and a fresh writable layer in the container's dir (discarded on restart, as a new
 *   container's is), remounted read-only when `readOnlyRootFilesystem` is set. On top: a new
 *   procfs, a read-only sysfs, a /dev with only the standard devices, and the pod's volumes
 *   and /etc/hosts at their mount paths, resolved inside the image (rootfs-path.ts). Nothing
 *   else of the host is visible;
 * - the securityContext's uid, gid and fsGroup, no new privileges and no capabilities, set by
 *   the image's own `setpriv` (util-linux, in every Debian image) after the root is changed.
 * Mounts live only in the container's mount namespace, so nothing is left on the host.
 */

export interface Mount {
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
}

export interface ContainerLaunch {
  name: string;
  netns: string;
  hostname: string;
  /** The image's unpacked root file system: the overlay's read-only lower layer. */
  imageRootfs: string;
  /** This container's dir: its writable layer (`upper`, `work`) and the root's mount point (`root`). */
  dir: string;
  workdir: string;
  argv: string[];
  env: Record<string, string>;
  user?: { uid: number; gid: number; groups: number[] };
  readOnlyRoot: boolean;
  mounts: Mount[];
  logFile: string;
}

export interface RunningContainer {
  readonly process: ManagedProcess;
  readonly startedAt: string;
  /** Host pid of the container's PID 1, once it exists. */
  initPid(): number | undefined;
  /** Runs a command inside the container (its namespaces, root, user and env); its exit code. */
  exec(command: string[], timeoutMs: number): Promise<number>;
  /** SIGTERM to PID 1, SIGKILL to everything after `graceMs`. */
  stop(graceMs: number): Promise<void>;
}

/** The devices a runtime gives every container: name, type, major, minor. */
const DEVICES: [string, number, number][] = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
  ['tty', 5, 0],
];

/** Single-quotes for sh. */
function q(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export function setupScript(launch: ContainerLaunch): string {
  const r = `${launch.dir}/root`;
  const overlay = `lowerdir=${launch.imageRootfs},upperdir=${launch.dir}/upper,workdir=${launch.dir}/work`;
  const lines = ['set -eu', `mount -t overlay overlay -o ${q(overlay)} ${q(r)}`];
  const inRoot = (path: string) => `${r}${resolveInRoot(launch.imageRootfs, path)}`;
  lines.push(`mkdir -p ${q(inRoot('/proc'))} ${q(inRoot('/sys'))} ${q(inRoot('/dev'))}`);
  lines.push(`mount -t proc proc ${q(inRoot('/proc'))}`);
  lines.push(`mount -t sysfs -o ro,nosuid,nodev,noexec sysfs ${q(inRoot('/sys'))}`);
  lines.push(...devScript(inRoot('/dev')));
  const mounts = [...launch.mounts].sort((a, b) => depth(a.containerPath) - depth(b.containerPath));
  for (const mount of mounts) {
    const target = inRoot(mount.containerPath);
    const isFile = statSync(mount.hostPath).isFile();
    lines.push(
      isFile ? `mkdir -p "$(dirname ${q(target)})" && touch ${q(target)}` : `mkdir -p ${q(target)}`,
      `mount --bind ${q(mount.hostPath)} ${q(target)}`,
    );
    if (mount.readOnly) lines.push(`mount -o remount,bind,ro ${q(target)}`);
  }
  if (launch.readOnlyRoot) lines.push(`mount -o remount,ro ${q(r)}`);
  lines.push(`hostname ${q(launch.hostname)}`);
  // unshare (the host's) changes root and working directory; from there on only the image's
  // programs run, starting with its setpriv.
  lines.push(
    `exec unshare --root=${q(r)} --wd=${q(launch.workdir)} -- ${dropPrivileges(launch.user).join(' ')} "$@"`,
  );
  return lines.join('\n');
}

function depth(path: string): number {
  return path.split('/').filter(Boolean).length;
}

function devScript(dev: string): string[] {
  return [
    `mount -t tmpfs -o nosuid,mode=755,size=65536k tmpfs ${q(dev)}`,
    ...DEVICES.map(([name, major, minor]) => `mknod -m 666 ${q(`${dev}/${name}`)} c ${major} ${minor}`),
    `mkdir ${q(`${dev}/pts`)} ${q(`${dev}/shm`)}`,
    `mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts ${q(`${dev}/pts`)}`,
    `ln -s pts/ptmx ${q(`${dev}/ptmx`)}`,
    `mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=65536k shm ${q(`${dev}/shm`)}`,
    `ln -s /proc/self/fd ${q(`${dev}/fd`)}`,
    ...['stdin', 'stdout', 'stderr'].map((name, fd) => `ln -s /proc/self/fd/${fd} ${q(`${dev}/${name}`)}`),
  ];
}

function dropPrivileges(user: ContainerLaunch['user']): string[] {
  if (!user) return [];
  const groups = [...new Set([user.gid, ...user.groups])].join(',');
  return [
    '/usr/bin/setpriv',
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    `--groups=${groups}`,
    '--no-new-privs',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--',
  ];
}

export function startContainer(launch: ContainerLaunch): RunningContainer {
  const args = [
    'netns',
    'exec',
    launch.netns,
    'unshare',
    '--mount',
    '--uts',
    '--pid',
    '--fork',
    '--kill-child',
    '--propagation',
    'private',
    '--',
    '/bin/sh',
    '-c',
    setupScript(launch),
    'container-setup',
    ...launch.argv,
  ];
  const process = startProcess(`container ${launch.name}`, 'ip', args, {
    env: launch.env,
    logFile: launch.logFile,
  });
  const startedAt = new Date().toISOString();
  const initPid = () => childOf(process.pid);
  const exec = (command: string[], timeoutMs: number) => execIn(launch, initPid(), command, timeoutMs);
  const stop = async (graceMs: number) => {
    if (!process.running()) return;
    const pid = initPid();
    if (pid) signal(pid, 'SIGTERM');
    else killGroup(process.pid, 'SIGTERM');
    await process.stop(Math.max(graceMs, 0));
  };
  return { process, startedAt, initPid, exec, stop };
}

/** unshare --fork's child: the container's PID 1 as the host sees it. */
function childOf(pid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/);
    return children[0] ? Number(children[0]) : undefined;
  } catch {
    return undefined;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

async function execIn(
  launch: ContainerLaunch,
  pid: number | undefined,
  command: string[],
  timeoutMs: number,
): Promise<number> {
  if (!pid) return 126;
  const identity = launch.user ? ['-S', String(launch.user.uid), '-G', String(launch.user.gid)] : [];
  const args = ['-t', String(pid), '-m', '-u', '-n', '-p', '-r', '-w', ...identity, '--', ...command];
  try {
    await run('nsenter', args, { env: launch.env, timeoutMs });
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? code : 1;
  }
}
