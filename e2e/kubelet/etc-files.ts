import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount } from './container-runtime.ts';

/**
 * A pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, written once into the pod's dir as
 * the kubelet and the runtime write them, and bind-mounted into each of its containers (the
 * image's own files, if any, are hidden, as on a node).
 */
export async function writeEtcFiles(
  podDir: string,
  pod: { namespace: string; hostname: string; ip: string },
): Promise<Mount[]> {
  const files = {
    hosts: [
      '# Kubernetes-managed hosts file (test kubelet).',
      '127.0.0.1\tlocalhost',
      '::1\tlocalhost ip6-localhost ip6-loopback',
      `${pod.ip}\t${pod.hostname}`,
    ],
    hostname: [pod.hostname],
    // No cluster DNS here (and no kube-proxy to reach one): the search path only.
    'resolv.conf': [
      `search ${pod.namespace}.svc.cluster.local svc.cluster.local cluster.local`,
      'options ndots:5',
    ],
  };
  const dir = join(podDir, 'etc');
  await mkdir(dir, { recursive: true });
  const mounts: Mount[] = [];
  for (const [name, lines] of Object.entries(files)) {
    await writeFile(join(dir, name), `${lines.join('\n')}\n`);
    mounts.push({ hostPath: join(dir, name), containerPath: `/etc/${name}`, readOnly: false });
  }
  return mounts;
}
