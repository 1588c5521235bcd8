import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../../testing/ports.ts';
import { openAccess } from './access.ts';
import type { Cleanup } from './cleanup.ts';
import {
  ApiServer,
  type ApiServerRestart,
  type ControlPlaneTools,
  type RestartOptions,
  SERVICE_IP,
  startControllerManager,
  startEtcd,
  waitForApiserver,
} from './control-plane-processes.ts';
import { KubeClient, type KubeIdentity } from './kube-client.ts';
import { createPki, type Pki } from './pki.ts';
import type { ManagedProcess } from './processes.ts';

/**
 * etcd, kube-apiserver and kube-controller-manager as real processes, configured the way a
 * kubeadm cluster is in the respects the product depends on: TLS everywhere, client
 * certificates, Node + RBAC authorization with NodeRestriction admission, a service-account
 * issuer with its signing key (TokenRequest, projected tokens), and the controller manager
 * running each controller under its own service account.
 *
 * Three parts, one file each: the PKI (pki.ts), the processes (control-plane-processes.ts)
 * and how clients reach the API (access.ts). This file puts them together in order.
 */

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

  const { etcd, port: etcdPort } = await startEtcd(dir, tools.etcd, track);
  // The bridge address is this run's own, so nothing else can take the port meanwhile, and a
  // restarted kube-apiserver gets the same one back.
  const apiPort = await freePort(bridgeIp);
  const access = await openAccess(pki, { host: bridgeIp, port: apiPort });
  cleanup.add(
    'apiserver loopback forwarder',
    () => access.close(),
    () => access.closeSync(),
  );
  const apiserver = new ApiServer({
    dir,
    binary: tools.kubeApiserver,
    pki,
    host: bridgeIp,
    port: apiPort,
    etcdPort,
  });
  // One step for whichever kube-apiserver is current, so a restart keeps the teardown order.
  cleanup.add(
    'kube-apiserver',
    async () => {
      await apiserver.current().stop(15_000);
    },
    () => apiserver.current().stop(0),
  );

  const adminKubeconfig = await access.kubeconfig(join(dir, 'admin.kubeconfig'), 'e2e-admin', [
    'system:masters',
  ]);
  const adminIdentity = await access.identity('e2e-admin', ['system:masters']);
  const ready = () => waitForApiserver(new KubeClient(adminIdentity), [etcd, apiserver.current()]);
  await ready();

  const kcmKubeconfig = await access.kubeconfig(
    join(dir, 'kcm.kubeconfig'),
    'system:kube-controller-manager',
  );
  const controllerManager = track(
    startControllerManager(dir, tools.kubeControllerManager, pki, kcmKubeconfig),
  );

  return {
    pki,
    podServer: access.podServer,
    hostServer: access.hostServer,
    apiserverHost: bridgeIp,
    apiserverPort: apiPort,
    adminKubeconfig,
    identity: access.identity,
    processes: () => [etcd, apiserver.current(), controllerManager],
    restartApiServer: (options) => apiserver.restart(options, ready),
  };
}
