import { mkdir, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../testing/ports.ts';
import { type ClientCert, createPki, type Pki } from './certs.ts';
import type { Cleanup } from './cleanup.ts';
import { KubeClient, type KubeIdentity } from './kube-client.ts';
import { type ExitInfo, type ManagedProcess, startProcess } from './processes.ts';

/**
 * etcd, kube-apiserver and kube-controller-manager as real processes, configured the way a
 * kubeadm cluster is in the respects the product depends on: TLS everywhere, client
 * certificates, Node + RBAC authorization with NodeRestriction admission, a service-account
 * issuer with its signing key (TokenRequest, projected tokens), and the controller manager
 * running each controller under its own service account.
 *
 * kube-apiserver binds one address: the host side of the pods' network, since the operator
 * runs in a pod and must reach it there. Host-side clients (kubectl, helm, the tests) use a
 * loopback forwarder to the same port, so nothing listens on any other address.
 */

export interface ControlPlaneTools {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
}

export interface ControlPlane {
  pki: Pki;
  /** https://<bridge address>:<port>: what pods use. */
  podServer: string;
  /** https://127.0.0.1:<port>: what host-side clients use. */
  hostServer: string;
  apiserverHost: string;
  apiserverPort: number;
  /** Admin kubeconfig (system:masters) for kubectl and helm. */
  adminKubeconfig: string;
  identity(name: string, groups?: string[]): Promise<KubeIdentity>;
  /** The live processes: etcd, the current kube-apiserver, kube-controller-manager. */
  processes(): ManagedProcess[];
  /**
   * Stops kube-apiserver with `signal` (SIGTERM: its graceful shutdown, SIGKILL after
   * `stopGraceMs`; SIGKILL: a crash), leaves it down for `downForMs` after it exited, and
   * starts it again with the same flags on the same address, port, certificates and etcd.
   * Resolves once the new one answers /readyz.
   */
  restartApiServer(options: RestartOptions): Promise<ApiServerRestart>;
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

export async function startControlPlane(
  dir: string,
  bridgeIp: string,
  tools: ControlPlaneTools,
  cleanup: Cleanup,
): Promise<ControlPlane> {
  await mkdir(join(dir, 'pki'), { recursive: true });
  await mkdir(join(dir, 'logs'), { recursive: true });
  const pki = await createPki(join(dir, 'pki'), ['127.0.0.1', bridgeIp, SERVICE_IP]);
  const track = (p: ManagedProcess) => {
    cleanup.add(
      p.name,
      async () => {
        await p.stop(15_000);
      },
      () => p.stop(0),
    );
    return p;
  };

  const { etcd, port: etcdPort } = await startEtcdOnFreePorts(dir, tools.etcd, track);
  // The bridge address is this run's own, so nothing else can take the port meanwhile, and a
  // restarted kube-apiserver gets the same one back.
  const apiPort = await freePort(bridgeIp);
  const forwarder = await forwardLoopback(apiPort, bridgeIp);
  cleanup.add(
    'apiserver loopback forwarder',
    () => forwarder.close(),
    () => forwarder.closeSync(),
  );
  let incarnation = 1;
  const launchApiserver = () =>
    startApiserver(dir, tools.kubeApiserver, pki, bridgeIp, apiPort, etcdPort, incarnation);
  let apiserver = launchApiserver();
  // One step for whichever kube-apiserver is current, so a restart keeps the teardown order.
  cleanup.add(
    'kube-apiserver',
    async () => {
      await apiserver.stop(15_000);
    },
    () => apiserver.stop(0),
  );

  const hostServer = `https://127.0.0.1:${forwarder.port}`;
  const identity = async (name: string, groups: string[] = []): Promise<KubeIdentity> => {
    const cert = await pki.client(name, groups);
    return { server: hostServer, caFile: pki.caCert, certFile: cert.cert, keyFile: cert.key };
  };
  const admin = await pki.client('e2e-admin', ['system:masters']);
  const adminKubeconfig = join(dir, 'admin.kubeconfig');
  await writeKubeconfig(adminKubeconfig, hostServer, pki.caCert, admin);
  const adminIdentity = await identity('e2e-admin', ['system:masters']);
  await waitForApiserver(new KubeClient(adminIdentity), [etcd, apiserver]);

  const kcmKubeconfig = join(dir, 'kcm.kubeconfig');
  await writeKubeconfig(
    kcmKubeconfig,
    hostServer,
    pki.caCert,
    await pki.client('system:kube-controller-manager'),
  );
  const controllerManager = track(
    startControllerManager(dir, tools.kubeControllerManager, pki, kcmKubeconfig),
  );

  let restarting = false;
  const restartApiServer = async ({
    downForMs,
    signal = 'SIGTERM',
    stopGraceMs = 60_000,
  }: RestartOptions): Promise<ApiServerRestart> => {
    if (restarting) throw new Error('kube-apiserver is already being restarted');
    restarting = true;
    try {
      const signalledAt = Date.now();
      const exit = await apiserver.stop(signal === 'SIGKILL' ? 0 : stopGraceMs);
      const goneAt = Date.now();
      await sleep(downForMs);
      incarnation++;
      apiserver = launchApiserver();
      const startedAt = Date.now();
      await waitForApiserver(new KubeClient(adminIdentity), [etcd, apiserver]);
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
      restarting = false;
    }
  };

  return {
    pki,
    podServer: `https://${bridgeIp}:${apiPort}`,
    hostServer,
    apiserverHost: bridgeIp,
    apiserverPort: apiPort,
    adminKubeconfig,
    identity,
    processes: () => [etcd, apiserver, controllerManager],
    restartApiServer,
  };
}

/**
 * Loopback ports are shared with everything else on the machine, so a port found free can be
 * taken before etcd binds it: then etcd exits, and it is started again on other ports.
 */
async function startEtcdOnFreePorts(
  dir: string,
  binary: string,
  track: (p: ManagedProcess) => ManagedProcess,
): Promise<{ etcd: ManagedProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const [port, peerPort] = [await freePort('127.0.0.1'), await freePort('127.0.0.1')];
    const etcd = track(startEtcd(dir, binary, port, peerPort, attempt));
    if (await listening('127.0.0.1', port, etcd)) return { etcd, port };
    if (attempt >= 3 || !/address already in use/.test(etcd.logTail())) {
      throw new Error(`etcd exited during startup:\n${etcd.logTail()}`);
    }
  }
}

/** Resolves true once host:port accepts connections, false if the process exits first. */
async function listening(host: string, port: number, process: ManagedProcess): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && process.running()) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, host);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return process.running();
    await sleep(200);
  }
  return false;
}

function startEtcd(
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

function startApiserver(
  dir: string,
  binary: string,
  pki: Pki,
  bridgeIp: string,
  port: number,
  etcdPort: number,
  incarnation: number,
): ManagedProcess {
  const log = incarnation === 1 ? 'kube-apiserver.log' : `kube-apiserver-${incarnation}.log`;
  return startProcess(
    'kube-apiserver',
    binary,
    [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--bind-address=${bridgeIp}`,
      `--advertise-address=${bridgeIp}`,
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

function startControllerManager(dir: string, binary: string, pki: Pki, kubeconfig: string): ManagedProcess {
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

async function waitForApiserver(client: KubeClient, processes: ManagedProcess[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = '';
  try {
    while (Date.now() < deadline) {
      for (const p of processes) {
        if (!p.running()) throw new Error(`${p.name} exited during startup:\n${p.logTail()}`);
      }
      try {
        // /readyz covers etcd and the post-start hooks (RBAC bootstrap roles, priority levels).
        await client.request('GET', '/readyz');
        await client.get('/api/v1/namespaces/default');
        return;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(500);
    }
    throw new Error(`kube-apiserver not ready after ${START_TIMEOUT_MS} ms (${last})`);
  } finally {
    client.close();
  }
}

export async function writeKubeconfig(path: string, server: string, caFile: string, user: ClientCert) {
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'e2e', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: 'e2e', user: { 'client-certificate': user.cert, 'client-key': user.key } }],
    contexts: [{ name: 'e2e', context: { cluster: 'e2e', user: 'e2e' } }],
    'current-context': 'e2e',
  };
  // JSON is YAML, and every Kubernetes client reads it.
  await writeFile(path, JSON.stringify(config, null, 2), { mode: 0o600 });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

interface Forwarder {
  port: number;
  /** Stops listening and cuts every connection still open. */
  close(): Promise<void>;
  closeSync(): void;
}

/**
 * 127.0.0.1:<any free port> → bridgeIp:port, byte for byte (TLS passes through untouched).
 * Listening on port 0 lets the kernel pick, so no other process can race us to the port.
 *
 * When one side of a connection is gone, the other is closed once what was already read has
 * been written: a client must see its connection end when kube-apiserver exits (or restarts),
 * rather than keep a half-closed one open; and a client that hangs up frees its upstream.
 */
async function forwardLoopback(port: number, bridgeIp: string): Promise<Forwarder> {
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    const upstream = connect(port, bridgeIp);
    open.add(socket);
    socket.pipe(upstream).pipe(socket);
    const close = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on('error', close);
    upstream.on('error', close);
    socket.on('close', () => {
      open.delete(socket);
      upstream.destroySoon();
    });
    upstream.on('close', () => socket.destroySoon());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const cut = () => {
    for (const socket of open) socket.destroy();
  };
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      const closed = closeServer(server);
      cut();
      return closed;
    },
    closeSync: () => {
      server.close();
      cut();
    },
  };
}
