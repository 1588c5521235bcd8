import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../testing/ports.ts';
import { abandonWait, waitFor } from '../../testing/wait.ts';
import type { KubeClient } from './kube-client.ts';
import type { Pki } from './pki.ts';
import { type ExitInfo, type ManagedProcess, startProcess } from './processes.ts';

/**
 * The control plane's processes: etcd, kube-apiserver (which can be restarted in place) and
 * kube-controller-manager, each with the flags a kubeadm cluster uses where the product
 * depends on them, logging to `<dir>/logs/`.
 */

export interface ControlPlaneTools {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
}

export interface RestartOptions {
  downForMs: number;
  signal?: 'SIGTERM' | 'SIGKILL';
  stopGraceMs?: number;
}

export interface ApiServerRestart {
  signal: 'SIGTERM' | 'SIGKILL';
  /** How the old process ended (a SIGTERM that needed the SIGKILL fallback shows SIGKILL). */
  exit: ExitInfo;
  /** Signal sent → process gone. */
  stopMs: number;
  /** Process gone → new process started. */
  downMs: number;
  /** New process started → /readyz answered. */
  readyMs: number;
  /** Signal sent → /readyz answered: how long clients could not count on the API. */
  unavailableMs: number;
}

const START_TIMEOUT_MS = 180_000;
export const SERVICE_CIDR = '10.96.0.0/24';
export const SERVICE_IP = '10.96.0.1';

/**
 * Loopback ports are shared with everything else on the machine, so a port found free can be
 * taken before etcd binds it: then etcd exits, and it is started again on other ports.
 */
export async function startEtcd(
  dir: string,
  binary: string,
  track: (p: ManagedProcess) => ManagedProcess,
): Promise<{ etcd: ManagedProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const [port, peerPort] = [await freePort('127.0.0.1'), await freePort('127.0.0.1')];
    const etcd = track(etcdProcess(dir, binary, port, peerPort, attempt));
    if (await listening('127.0.0.1', port, etcd)) return { etcd, port };
    if (attempt >= 3 || !/address already in use/.test(etcd.logTail())) {
      throw new Error(`etcd exited during startup:\n${etcd.logTail()}`);
    }
  }
}

/** Resolves true once host:port accepts connections, false if the process exits first. */
async function listening(host: string, port: number, process: ManagedProcess): Promise<boolean> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, host);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  // Ends early, with the answer false, when the process exits before it listens.
  const settled = await waitFor(
    `${process.name} to listen on ${host}:${port}`,
    async () => !process.running() || (await accepts()),
    { timeoutMs: START_TIMEOUT_MS, intervalMs: 200 },
  ).catch(() => false);
  return settled && process.running();
}

function etcdProcess(
  dir: string,
  binary: string,
  clientPort: number,
  peerPort: number,
  attempt: number,
): ManagedProcess {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return startProcess(
    'etcd',
    binary,
    [
      '--name=e2e',
      `--data-dir=${join(dir, `etcd-${attempt}`)}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=e2e=${peer}`,
      // A test cluster's data is thrown away; fsync only costs time on a busy disk.
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    { env: { PATH: process.env.PATH }, logFile: join(dir, 'logs', `etcd-${attempt}.log`) },
  );
}

export interface ApiServerSettings {
  dir: string;
  binary: string;
  pki: Pki;
  /** The one address it binds, and the one it advertises. */
  host: string;
  port: number;
  etcdPort: number;
}

/**
 * kube-apiserver, started on construction. A restart starts a new process with the same
 * flags, address, port, certificates and etcd; `current` is whichever one runs now, so a
 * teardown step registered before a restart still stops the right one.
 */
export class ApiServer {
  private readonly settings: ApiServerSettings;
  private incarnation = 1;
  private process: ManagedProcess;
  private restarting = false;

  constructor(settings: ApiServerSettings) {
    this.settings = settings;
    this.process = apiserverProcess(settings, this.incarnation);
  }

  current(): ManagedProcess {
    return this.process;
  }

  /**
   * Stops kube-apiserver with `signal` (SIGTERM: its graceful shutdown, SIGKILL after
   * `stopGraceMs`; SIGKILL: a crash), leaves it down for `downForMs` after it exited, starts
   * it again and resolves once `ready` does.
   */
  async restart(
    { downForMs, signal = 'SIGTERM', stopGraceMs = 60_000 }: RestartOptions,
    ready: () => Promise<void>,
  ): Promise<ApiServerRestart> {
    if (this.restarting) throw new Error('kube-apiserver is already being restarted');
    this.restarting = true;
    try {
      const signalledAt = Date.now();
      const exit = await this.process.stop(signal === 'SIGKILL' ? 0 : stopGraceMs);
      const goneAt = Date.now();
      await sleep(downForMs);
      this.process = apiserverProcess(this.settings, ++this.incarnation);
      const startedAt = Date.now();
      await ready();
      const readyAt = Date.now();
      return {
        signal,
        exit,
        stopMs: goneAt - signalledAt,
        downMs: startedAt - goneAt,
        readyMs: readyAt - startedAt,
        unavailableMs: readyAt - signalledAt,
      };
    } finally {
      this.restarting = false;
    }
  }
}

function apiserverProcess(settings: ApiServerSettings, incarnation: number): ManagedProcess {
  const { dir, binary, pki, host, port, etcdPort } = settings;
  const log = incarnation === 1 ? 'kube-apiserver.log' : `kube-apiserver-${incarnation}.log`;
  return startProcess(
    'kube-apiserver',
    binary,
    [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--bind-address=${host}`,
      `--advertise-address=${host}`,
      `--secure-port=${port}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--profiling=false',
      '--v=1',
    ],
    { env: { PATH: process.env.PATH }, logFile: join(dir, 'logs', log) },
  );
}

export function startControllerManager(
  dir: string,
  binary: string,
  pki: Pki,
  kubeconfig: string,
): ManagedProcess {
  // Nodes here have no kubelet heartbeat, no pod CIDR and no cloud: the controllers for those
  // would taint or evict the test node's pods.
  const controllers = [
    '*',
    '-node-lifecycle-controller',
    '-taint-eviction-controller',
    '-node-ipam-controller',
    '-node-route-controller',
    '-cloud-node-lifecycle-controller',
    '-service-lb-controller',
  ];
  return startProcess(
    'kube-controller-manager',
    binary,
    [
      `--kubeconfig=${kubeconfig}`,
      '--secure-port=0',
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${pki.saKey}`,
      `--root-ca-file=${pki.caCert}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      `--controllers=${controllers.join(',')}`,
      '--v=1',
    ],
    { env: { PATH: process.env.PATH }, logFile: join(dir, 'logs', 'kube-controller-manager.log') },
  );
}

/** Resolves once the API answers /readyz and a read; fails at once if a process exits. */
export async function waitForApiserver(client: KubeClient, processes: ManagedProcess[]): Promise<void> {
  try {
    await waitFor(
      'kube-apiserver to be ready',
      async () => {
        const gone = processes.find((p) => !p.running());
        if (gone) abandonWait(`${gone.name} exited during startup:\n${gone.logTail()}`);
        // /readyz covers etcd and the post-start hooks (RBAC bootstrap roles, priority levels).
        await client.request('GET', '/readyz');
        await client.get('/api/v1/namespaces/default');
        return true;
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 500 },
    );
  } finally {
    client.close();
  }
}
