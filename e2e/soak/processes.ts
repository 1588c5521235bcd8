import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../cluster/processes.ts';
import type { TestKubelet } from '../kubelet/kubelet.ts';
import type { PodWorker } from '../kubelet/pod-worker.ts';
import { NAMESPACE } from '../scenarios/support/environment.ts';
import type { DiskSample, ResourceSample } from './record.ts';

/**
 * The sidecars and operators as processes on the test node, seen from outside as cAdvisor
 * would see containers: resident memory and open file descriptors of each container's main
 * process (its PID 1, the node process), the size of each fleet pod's data volume, and the
 * processes left in a container once it is idle.
 */

const CONTAINERS: Record<string, ResourceSample['role']> = { gitmirror: 'sidecar', operator: 'operator' };
const RESOURCE_MS = 5000;
const DISK_MS = 30_000;

export interface ContainerProcess {
  pod: string;
  role: ResourceSample['role'];
  /** The program (Node); `initPid` is the container's PID 1 (tini, or the program itself). */
  pid: number;
  initPid: number;
  worker: PodWorker;
}

/** The running sidecar and operator containers of the soak's namespace. */
export function containers(kubelet: TestKubelet): ContainerProcess[] {
  const found: ContainerProcess[] = [];
  for (const worker of kubelet.pods()) {
    const [namespace, pod] = worker.name.split('/');
    if (namespace !== NAMESPACE || !pod) continue;
    for (const [name, role] of Object.entries(CONTAINERS)) {
      const initPid = worker.container(name)?.initPid();
      const pid = mainPid(initPid);
      if (initPid && pid) found.push({ pod, role, pid, initPid, worker });
    }
  }
  return found;
}

/** The container's program: its PID 1, or the one child of an init (the image's tini). */
function mainPid(initPid: number | undefined): number | undefined {
  if (!initPid) return undefined;
  try {
    if (readFileSync(`/proc/${initPid}/comm`, 'utf8').trim() !== 'tini') return initPid;
    const child = readFileSync(`/proc/${initPid}/task/${initPid}/children`, 'utf8').trim().split(/\s+/)[0];
    return child ? Number(child) : undefined;
  } catch {
    return undefined; // it exited meanwhile
  }
}

export function readProcess(pid: number): { rssBytes: number; fds: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return Number.isFinite(rssKb) ? { rssBytes: rssKb * 1024, fds } : undefined;
  } catch {
    return undefined; // it exited between the listing and the read
  }
}

/** The data volume of a fleet pod on the node. */
export function dataDir(worker: PodWorker): string {
  return join(worker.dir, 'volumes', 'data');
}

export async function duBytes(dir: string): Promise<number | undefined> {
  try {
    const { stdout } = await run('du', ['-sb', dir], { timeoutMs: 60_000 });
    return Number(stdout.split(/\s/)[0]);
  } catch {
    return undefined; // the pod went away while du ran
  }
}

/** Processes in the container's PID namespace other than its init and program, with their command lines. */
export function otherProcesses(container: { pid: number; initPid: number }): string[] {
  const { initPid } = container;
  let ns: string;
  try {
    ns = readlinkSync(`/proc/${initPid}/ns/pid`);
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === initPid || pid === container.pid) continue;
    try {
      if (readlinkSync(`/proc/${pid}/ns/pid`) !== ns) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      // A zombie has no command line left; its name, state and parent still say what it was.
      const stat = /^\d+ \((.*)\) (\S) (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      const what = stat
        ? `(${stat[1]}) ${stat[2] === 'Z' ? 'zombie' : `state ${stat[2]}`}, parent ${stat[3]}`
        : '';
      found.push(`pid ${pid} ${what}: ${cmdline.slice(0, 200)}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Samples memory and fds every 5 s and data dirs every 30 s until stopped. */
export class ResourceSampler {
  private readonly kubelet: TestKubelet;
  private readonly resources: ResourceSample[];
  private readonly disk: DiskSample[];
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(kubelet: TestKubelet, into: { resources: ResourceSample[]; disk: DiskSample[] }) {
    this.kubelet = kubelet;
    this.resources = into.resources;
    this.disk = into.disk;
  }

  start(): void {
    this.loops = [
      this.every(RESOURCE_MS, () => this.sampleResources()),
      this.every(DISK_MS, () => this.sampleDisk()),
    ];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  private async every(ms: number, work: () => Promise<void> | void): Promise<void> {
    while (!this.stopped) {
      await work();
      for (let waited = 0; waited < ms && !this.stopped; waited += 250) await sleep(250);
    }
  }

  private sampleResources(): void {
    const at = Date.now();
    for (const c of containers(this.kubelet)) {
      const sample = readProcess(c.pid);
      if (sample) this.resources.push({ at, role: c.role, pod: c.pod, pid: c.pid, ...sample });
    }
  }

  private async sampleDisk(): Promise<void> {
    for (const c of containers(this.kubelet).filter((x) => x.role === 'sidecar')) {
      const bytes = await duBytes(dataDir(c.worker));
      if (bytes !== undefined) this.disk.push({ at: Date.now(), pod: c.pod, bytes });
    }
  }
}
