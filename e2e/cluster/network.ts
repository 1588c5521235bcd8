import { execFileSync } from 'node:child_process';
import { isAlive, run } from './processes.ts';

/**
 * The pods' network: a Linux bridge on the host with the first address of a private /24, and
 * per pod a network namespace joined to the bridge by a veth pair. Pods get no default route,
 * so they reach the host's bridge address and each other and nothing else. The host address is
 * where the suite binds what pods must reach (kube-apiserver, the git upstream, the S3 server).
 *
 * Names carry the pid of the test process that made them (`gme2e-<pid>-...`), so a later run
 * can tell leftovers of a killed run from a concurrent live one (see `sweepStaleNetworks`).
 */

const SUBNET_BASE = [10, 213] as const;
export const NETNS_PREFIX = 'gme2e-';

export interface PodSandbox {
  netns: string;
  ip: string;
  hostVeth: string;
}

export class PodNetwork {
  readonly bridge: string;
  readonly hostIp: string;
  readonly prefixLength = 24;
  private readonly subnet: string;
  private readonly owner = process.pid;
  private readonly used = new Set<number>();
  private counter = 0;

  private constructor(subnet: string) {
    this.subnet = subnet;
    this.bridge = `gmb${this.owner}`;
    this.hostIp = `${subnet}.1`;
  }

  /** Creates the bridge on a /24 that no route or address on this host uses yet. */
  static async create(): Promise<PodNetwork> {
    const subnet = await pickFreeSubnet();
    const network = new PodNetwork(subnet);
    await ip(['link', 'add', network.bridge, 'type', 'bridge']);
    try {
      await ip(['addr', 'add', `${network.hostIp}/24`, 'dev', network.bridge]);
      await ip(['link', 'set', network.bridge, 'up']);
    } catch (err) {
      network.destroySync();
      throw err;
    }
    return network;
  }

  async addPod(): Promise<PodSandbox> {
    const host = this.allocateHost();
    const index = ++this.counter;
    const netns = `${NETNS_PREFIX}${this.owner}-${index}`;
    const hostVeth = `gmh${this.owner}x${index}`.slice(0, 15);
    const podVeth = `gmp${this.owner}x${index}`.slice(0, 15);
    const podIp = `${this.subnet}.${host}`;
    try {
      await ip(['netns', 'add', netns]);
      await ip(['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', podVeth]);
      await ip(['link', 'set', podVeth, 'netns', netns]);
      await ip(['link', 'set', hostVeth, 'master', this.bridge, 'up']);
      await ip(['-n', netns, 'link', 'set', podVeth, 'name', 'eth0']);
      await ip(['-n', netns, 'addr', 'add', `${podIp}/24`, 'dev', 'eth0']);
      await ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
      await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    } catch (err) {
      await this.removePod({ netns, ip: podIp, hostVeth });
      throw err;
    }
    return { netns, ip: podIp, hostVeth };
  }

  /** Deleting the namespace deletes its veth end, and with it the host end. */
  async removePod(sandbox: PodSandbox): Promise<void> {
    await ip(['netns', 'del', sandbox.netns]).catch(() => {});
    await ip(['link', 'del', sandbox.hostVeth]).catch(() => {});
    this.used.delete(Number(sandbox.ip.split('.')[3]));
  }

  async destroy(): Promise<void> {
    this.destroySync();
  }

  /**
   * Removes every namespace this process made, their host-side veths (the kernel would only
   * drop them once it got round to destroying the namespace, which can take a minute), and the
   * bridge.
   */
  destroySync(): void {
    for (const netns of listNetnsSync()) {
      if (netns.startsWith(`${NETNS_PREFIX}${this.owner}-`)) deleteNetnsSync(netns);
    }
    for (const link of [...listLinksSync(`gmh${this.owner}x`), this.bridge]) {
      try {
        execFileSync('ip', ['link', 'del', link], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
  }

  private allocateHost(): number {
    for (let host = 2; host < 255; host++) {
      if (!this.used.has(host)) {
        this.used.add(host);
        return host;
      }
    }
    throw new Error('pod network is full');
  }
}

function ip(args: string[]): Promise<unknown> {
  return run('ip', args, { timeoutMs: 20_000 });
}

async function pickFreeSubnet(): Promise<string> {
  const { stdout: routes } = await run('ip', ['-4', 'route', 'show', 'table', 'all']);
  const { stdout: addrs } = await run('ip', ['-4', '-o', 'addr', 'show']);
  const taken = `${routes}\n${addrs}`;
  // Start from the pid so two concurrent runs rarely try the same subnet first.
  const start = process.pid % 200;
  for (let i = 0; i < 200; i++) {
    const third = (start + i) % 200;
    const subnet = `${SUBNET_BASE[0]}.${SUBNET_BASE[1]}.${third}`;
    if (!taken.includes(`${subnet}.`) && !overlapsWiderRoute(routes, subnet)) return subnet;
  }
  throw new Error(`no free /24 in ${SUBNET_BASE.join('.')}.0.0/16 for the pod network`);
}

/** A route like 10.0.0.0/8 would make our /24 ambiguous even though no address matches it. */
function overlapsWiderRoute(routes: string, subnet: string): boolean {
  const target = toInt(`${subnet}.0`);
  for (const match of routes.matchAll(/(\d+\.\d+\.\d+\.\d+)\/(\d+)/g)) {
    const bits = Number(match[2]);
    if (bits === 0 || bits > 24) continue;
    const mask = bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    if ((toInt(match[1]!) & mask) >>> 0 === (target & mask) >>> 0) return true;
  }
  return false;
}

function toInt(address: string): number {
  return address.split('.').reduce((acc, part) => ((acc << 8) | Number(part)) >>> 0, 0);
}

function listLinksSync(prefix: string): string[] {
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  return [...links.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1]!).filter((name) => name.startsWith(prefix));
}

export function listNetnsSync(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter(Boolean);
  } catch {
    return [];
  }
}

/** Kills whatever still runs in the namespace, then deletes it. */
export function deleteNetnsSync(netns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' });
    for (const pid of pids.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  } catch {
    // No such namespace.
  }
  try {
    execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
  } catch {
    // Already gone.
  }
}

/** Namespaces and bridges left by test processes that no longer exist (a SIGKILLed run). */
export function sweepStaleNetworks(): string[] {
  const removed: string[] = [];
  for (const netns of listNetnsSync()) {
    const owner = new RegExp(`^${NETNS_PREFIX}(\\d+)-`).exec(netns)?.[1];
    if (owner && !isAlive(Number(owner))) {
      deleteNetnsSync(netns);
      removed.push(netns);
    }
  }
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  for (const match of links.matchAll(/^\d+: (gm[bh](\d+)[^:@]*)/gm)) {
    if (!isAlive(Number(match[2]))) {
      try {
        execFileSync('ip', ['link', 'del', match[1]!], { stdio: 'ignore' });
        removed.push(match[1]!);
      } catch {
        // Went with its namespace.
      }
    }
  }
  return removed;
}
