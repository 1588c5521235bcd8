import { mkdir, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ClientCert, createPki, type Pki } from './certs.ts';
import type { Cleanup } from './cleanup.ts';
import { KubeClient, type KubeIdentity } from './kube-client.ts';
import { type ManagedProcess, startProcess } from './processes.ts';

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
  processes: ManagedProcess[];
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
  const processes: ManagedProcess[] = [];
  const track = (p: ManagedProcess) => {
    processes.push(p);
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
  // The bridge address is this run's own, so nothing else can take the port meanwhile.
  const apiPort = await freePort(bridgeIp);
  const forwarder = await forwardLoopback(apiPort, bridgeIp);
  cleanup.add(
    'apiserver loopback forwarder',
    () => closeServer(forwarder),
    () => forwarder.close(),
  );
  const apiserver = track(startApiserver(dir, tools.kubeApiserver, pki, bridgeIp, apiPort, etcdPort));

  const hostServer = `https://127.0.0.1:${(forwarder.address() as AddressInfo).port}`;
  const identity = async (name: string, groups: string[] = []): Promise<KubeIdentity> => {
    const cert = await pki.client(name, groups);
    return { server: hostServer, caFile: pki.caCert, certFile: cert.cert, keyFile: cert.key };
  };
  const admin = await pki.client('e2e-admin', ['system:masters']);
  const adminKubeconfig = join(dir, 'admin.kubeconfig');
  await writeKubeconfig(adminKubeconfig, hostServer, pki.caCert, admin);
  await waitForApiserver(new KubeClient(await identity('e2e-admin', ['system:masters'])), [etcd, apiserver]);

  const kcmKubeconfig = join(dir, 'kcm.kubeconfig');
  await writeKubeconfig(
    kcmKubeconfig,
    hostServer,
    pki.caCert,
    await pki.client('system:kube-controller-manager'),
  );
  track(startControllerManager(dir, tools.kubeControllerManager, pki, kcmKubeconfig));

  return {
    pki,
    podServer: `https://${bridgeIp}:${apiPort}`,
    hostServer,
    apiserverHost: bridgeIp,
    apiserverPort: apiPort,
    adminKubeconfig,
    identity,
    processes,
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
): ManagedProcess {
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
    { env: { PATH: process.env.PATH }, logFile: join(dir, 'logs', 'kube-apiserver.log') },
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

export async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await closeServer(server);
  if (!address || typeof address === 'string') throw new Error('could not pick a port');
  return address.port;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * 127.0.0.1:<any free port> → bridgeIp:port, byte for byte (TLS passes through untouched).
 * Listening on port 0 lets the kernel pick, so no other process can race us to the port.
 */
async function forwardLoopback(port: number, bridgeIp: string): Promise<Server> {
  const server = createServer((socket) => {
    const upstream = connect(port, bridgeIp);
    socket.pipe(upstream).pipe(socket);
    const close = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on('error', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}
