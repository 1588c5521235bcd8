import { writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import type { KubeIdentity } from './kube-client.ts';
import type { ClientCert, Pki } from './pki.ts';

/**
 * How clients reach kube-apiserver. It binds one address, the host side of the pods' network,
 * since the operator runs in a pod and must reach it there; host-side clients (kubectl, helm,
 * the tests, the controller manager) use a loopback forwarder to the same port, so nothing
 * listens on any other address. Each user is a client certificate from the run's PKI.
 */
export interface ClusterAccess {
  /** https://<bridge address>:<port>: what pods use. */
  podServer: string;
  /** https://127.0.0.1:<port>: what host-side clients use. */
  hostServer: string;
  /** A host-side identity: `name` is the user, `groups` its groups (CN and O of its certificate). */
  identity(name: string, groups?: string[]): Promise<KubeIdentity>;
  /** Writes a kubeconfig for that identity to `path` (for kubectl, helm, controllers); returns `path`. */
  kubeconfig(path: string, name: string, groups?: string[]): Promise<string>;
  /** Stops the forwarder and cuts every connection through it. */
  close(): Promise<void>;
  closeSync(): void;
}

export async function openAccess(
  pki: Pki,
  apiserver: { host: string; port: number },
): Promise<ClusterAccess> {
  const forwarder = await forwardLoopback(apiserver.port, apiserver.host);
  const hostServer = `https://127.0.0.1:${forwarder.port}`;
  return {
    podServer: `https://${apiserver.host}:${apiserver.port}`,
    hostServer,
    identity: async (name, groups = []) => {
      const cert = await pki.client(name, groups);
      return { server: hostServer, caFile: pki.caCert, certFile: cert.cert, keyFile: cert.key };
    },
    kubeconfig: async (path, name, groups = []) => {
      await writeKubeconfig(path, hostServer, pki.caCert, await pki.client(name, groups));
      return path;
    },
    close: () => forwarder.close(),
    closeSync: () => forwarder.closeSync(),
  };
}

async function writeKubeconfig(path: string, server: string, caFile: string, user: ClientCert) {
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

interface Forwarder {
  port: number;
  close(): Promise<void>;
  closeSync(): void;
}

/**
 * 127.0.0.1:<any free port> → host:port, byte for byte (TLS passes through untouched).
 * Listening on port 0 lets the kernel pick, so no other process can race us to the port.
 *
 * When one side of a connection is gone, the other is closed once what was already read has
 * been written: a client must see its connection end when kube-apiserver exits (or restarts),
 * rather than keep a half-closed one open; and a client that hangs up frees its upstream.
 */
async function forwardLoopback(port: number, host: string): Promise<Forwarder> {
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    const upstream = connect(port, host);
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

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
