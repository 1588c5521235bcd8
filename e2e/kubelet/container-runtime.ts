import { readFileSync } from 'node:fs';
import { killGroup, type ManagedProcess, run, startProcess } from '../cluster/processes.ts';

/**
 * Runs one container as a real process tree with the isolation the product depends on:
 * - the pod's network namespace (`ip netns exec`), so it listens on the pod IP;
 * - its own mount, UTS and PID namespaces (`unshare`): the process is PID 1, and when it
 *   exits the kernel kills everything it left behind, as a container runtime does;
 * - a root filesystem assembled from bind mounts and `chroot`ed into: the host's /usr, /etc
 *   (read-only) for git, zstd and libc; the checkout at the image's WORKDIR; the project's
 *   Node 24 at /usr/local/bin/node; the pod's volumes at their mountPaths. The root itself is a
 *   tmpfs that is remounted read-only when `readOnlyRootFilesystem` is set;
 * - the securityContext's uid, gid and fsGroup, no new privileges and no capabilities
 *   (`setpriv`).
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
  rootfs: string;
  /** Host directory mounted at the image's WORKDIR (the repository checkout). */
  appDir: string;
  workdir: string;
  nodeBinary: string;
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

const HOST_DIRS = ['usr', 'etc'];

/** Single-quotes for sh. */
function q(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function setupScript(launch: ContainerLaunch): string {
  const r = launch.rootfs;
  const lines = ['set -eu', `mount -t tmpfs -o mode=755 rootfs ${q(r)}`];
  for (const dir of HOST_DIRS) {
    lines.push(`mkdir -p ${q(`${r}/${dir}`)}`, `mount --rbind /${dir} ${q(`${r}/${dir}`)}`);
    lines.push(`mount -o remount,bind,ro ${q(`${r}/${dir}`)}`);
  }
  // Debian's merged /usr: /bin, /lib, ... are symlinks into /usr, so the same links will do.
  for (const link of ['bin', 'sbin', 'lib', 'lib64']) lines.push(`ln -s usr/${link} ${q(`${r}/${link}`)}`);
  lines.push(`mount -t tmpfs -o mode=755 usrlocal ${q(`${r}/usr/local`)}`);
  lines.push(`mkdir -p ${q(`${r}/usr/local/bin`)}`, `touch ${q(`${r}/usr/local/bin/node`)}`);
  lines.push(`mount --bind ${q(launch.nodeBinary)} ${q(`${r}/usr/local/bin/node`)}`);
  lines.push(`mkdir -p ${q(`${r}/proc`)} ${q(`${r}/dev`)} ${q(`${r}/sys`)}`);
  lines.push(`mount -t proc proc ${q(`${r}/proc`)}`, `mount --rbind /dev ${q(`${r}/dev`)}`);
  lines.push(`mount --rbind /sys ${q(`${r}/sys`)}`);
  const mounts = [
    { hostPath: launch.appDir, containerPath: launch.workdir, readOnly: true },
    ...launch.mounts,
  ];
  for (const mount of mounts) {
    const target = `${r}${mount.containerPath}`;
    lines.push(`mkdir -p ${q(target)}`, `mount --bind ${q(mount.hostPath)} ${q(target)}`);
    if (mount.readOnly) lines.push(`mount -o remount,bind,ro ${q(target)}`);
  }
  if (launch.readOnlyRoot) lines.push(`mount -o remount,ro ${q(r)}`);
  lines.push(`hostname ${q(launch.hostname)}`);
  lines.push(
    `exec chroot ${q(r)} ${dropPrivileges(launch.user).join(' ')} /bin/sh -c 'cd "$0" && exec "$@"' "$0" "$@"`,
  );
  return lines.join('\n');
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
    launch.workdir,
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
