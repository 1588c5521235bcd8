import { execFile } from 'node:child_process';
import { chmod, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Ownership, type VolumeFile, writeAtomically } from './atomic-writer.ts';
import { fieldValue, MissingReferenceError, resourceValue } from './env.ts';
import type { DownwardApiFile, KeyToPath, Pod, ProjectionSource, Volume } from './pod-types.ts';

/**
 * A pod's volumes as directories under the pod's dir, bind-mounted into its containers:
 * emptyDir (mode 0777, as the kubelet makes it), secret, configMap, downwardAPI and projected
 * (service-account tokens from the TokenRequest API, bound to the pod, with the volume's
 * audience and expiry). Files are owned by root and the pod's fsGroup, so a non-root container
 * reads them through its group exactly as on a node. Secrets, config maps and tokens are
 * re-synced on `refresh()` (tokens once 80% of their lifetime has passed, like the kubelet).
 */

export interface VolumeSources {
  secret(name: string): Promise<Record<string, Buffer> | undefined>;
  configMap(name: string): Promise<Record<string, Buffer> | undefined>;
  token(
    serviceAccount: string,
    audience: string | undefined,
    expirationSeconds: number,
  ): Promise<{ token: string; expiresAt: number }>;
}

export class UnsupportedVolumeError extends Error {}

const exec = promisify(execFile);

const QUANTITY = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/;
const SUFFIXES: Record<string, number> = {
  '': 1,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
};

/** Bytes of a resource quantity such as `3Mi` or `500M` (the forms sizeLimit takes here). */
export function quantityBytes(quantity: string): number {
  const match = QUANTITY.exec(quantity);
  if (!match) throw new UnsupportedVolumeError(`sizeLimit ${quantity}: not a quantity this kubelet reads`);
  return Math.ceil(Number(match[1]) * SUFFIXES[match[2] ?? '']!);
}

interface TokenCache {
  token: string;
  issuedAt: number;
  expiresAt: number;
}

export class PodVolumes {
  private readonly tokens = new Map<string, TokenCache>();
  private readonly owner: Ownership;

  private readonly pod: Pod;
  private readonly dir: string;
  private readonly sources: VolumeSources;
  private readonly ips: { podIp: string; hostIp: string };

  constructor(pod: Pod, dir: string, sources: VolumeSources, ips: { podIp: string; hostIp: string }) {
    this.pod = pod;
    this.dir = dir;
    this.sources = sources;
    this.ips = ips;
    this.owner = { uid: 0, gid: pod.spec.securityContext?.fsGroup ?? 0 };
  }

  hostPath(volumeName: string): string {
    return join(this.dir, volumeName);
  }

  /** Creates every volume; a missing non-optional Secret or ConfigMap throws MissingReferenceError. */
  async setUp(): Promise<void> {
    for (const volume of this.pod.spec.volumes ?? []) {
      if (volume.emptyDir) await this.emptyDir(volume.name);
      else await this.sync(volume);
    }
  }

  /**
   * The first emptyDir whose usage passes its sizeLimit, measured as the kubelet's eviction
   * manager measures it (du of the directory), or undefined when every one is within its limit.
   */
  async overLimit(): Promise<{ volume: string; limit: string; usedBytes: number } | undefined> {
    for (const volume of this.pod.spec.volumes ?? []) {
      const limit = volume.emptyDir?.sizeLimit;
      if (!limit) continue;
      const { stdout } = await exec('du', ['-s', '-B1', this.hostPath(volume.name)]);
      const usedBytes = Number(stdout.split('\t')[0]);
      if (usedBytes > quantityBytes(limit)) return { volume: volume.name, limit, usedBytes };
    }
    return undefined;
  }

  /** Re-reads secrets, config maps and due tokens, swapping the files atomically. */
  async refresh(): Promise<void> {
    for (const volume of this.pod.spec.volumes ?? []) {
      if (!volume.emptyDir) await this.sync(volume);
    }
  }

  private async emptyDir(name: string): Promise<void> {
    const path = this.hostPath(name);
    await mkdir(path, { recursive: true });
    // Sticky-less 0777 plus the fsGroup's setgid bit: what the kubelet gives an emptyDir.
    await chown(path, 0, this.owner.gid);
    await chmod(path, this.owner.gid ? 0o2777 : 0o777);
  }

  private async sync(volume: Volume): Promise<void> {
    const files = await this.filesOf(volume);
    if (files) await writeAtomically(this.hostPath(volume.name), files, this.owner);
  }

  private async filesOf(volume: Volume): Promise<VolumeFile[] | undefined> {
    if (volume.secret) {
      const { secretName, items, defaultMode, optional } = volume.secret;
      const data = await this.required('secret', secretName, optional, (n) => this.sources.secret(n));
      return data ? this.keyFiles(data, items, defaultMode ?? 0o644) : [];
    }
    if (volume.configMap) {
      const { name, items, defaultMode, optional } = volume.configMap;
      const data = await this.required('configmap', name, optional, (n) => this.sources.configMap(n));
      return data ? this.keyFiles(data, items, defaultMode ?? 0o644) : [];
    }
    if (volume.downwardAPI) {
      return this.downwardFiles(volume.downwardAPI.items ?? [], volume.downwardAPI.defaultMode ?? 0o644);
    }
    if (volume.projected) {
      const mode = volume.projected.defaultMode ?? 0o644;
      const files: VolumeFile[] = [];
      for (const source of volume.projected.sources) files.push(...(await this.projection(source, mode)));
      return files;
    }
    const kind = Object.keys(volume).find((k) => k !== 'name') ?? 'unknown';
    throw new UnsupportedVolumeError(
      `volume ${volume.name}: ${kind} volumes are not supported by the test kubelet`,
    );
  }

  private async projection(source: ProjectionSource, mode: number): Promise<VolumeFile[]> {
    if (source.serviceAccountToken) {
      const { audience, expirationSeconds, path } = source.serviceAccountToken;
      const token = await this.token(audience, expirationSeconds ?? 3600);
      return [{ path, content: Buffer.from(token), mode }];
    }
    if (source.secret) {
      const { name, items, optional } = source.secret;
      const data = await this.required('secret', name, optional, (n) => this.sources.secret(n));
      return data ? this.keyFiles(data, items, mode) : [];
    }
    if (source.configMap) {
      const { name, items, optional } = source.configMap;
      const data = await this.required('configmap', name, optional, (n) => this.sources.configMap(n));
      return data ? this.keyFiles(data, items, mode) : [];
    }
    if (source.downwardAPI) return this.downwardFiles(source.downwardAPI.items ?? [], mode);
    return [];
  }

  private async token(audience: string | undefined, expirationSeconds: number): Promise<string> {
    const key = `${audience ?? ''}|${expirationSeconds}`;
    const cached = this.tokens.get(key);
    const now = Date.now();
    if (cached && now < cached.issuedAt + 0.8 * (cached.expiresAt - cached.issuedAt)) return cached.token;
    const sa = this.pod.spec.serviceAccountName ?? 'default';
    const { token, expiresAt } = await this.sources.token(sa, audience, expirationSeconds);
    this.tokens.set(key, { token, issuedAt: now, expiresAt });
    return token;
  }

  private async required<T>(
    kind: string,
    name: string,
    optional: boolean | undefined,
    get: (name: string) => Promise<T | undefined>,
  ): Promise<T | undefined> {
    const data = await get(name);
    if (!data && !optional) throw new MissingReferenceError(`${kind} "${name}" not found`);
    return data;
  }

  private keyFiles(data: Record<string, Buffer>, items: KeyToPath[] | undefined, mode: number): VolumeFile[] {
    if (!items) return Object.entries(data).map(([key, content]) => ({ path: key, content, mode }));
    return items.map((item) => {
      const content = data[item.key];
      if (!content) throw new MissingReferenceError(`key ${item.key} not found`);
      return { path: item.path, content, mode: item.mode ?? mode };
    });
  }

  private downwardFiles(items: DownwardApiFile[], mode: number): VolumeFile[] {
    return items.map((item) => {
      let value = '';
      if (item.fieldRef) value = this.downwardField(item.fieldRef.fieldPath);
      else if (item.resourceFieldRef) {
        const container = this.pod.spec.containers.find(
          (c) => c.name === item.resourceFieldRef?.containerName,
        );
        value = resourceValue(item.resourceFieldRef, container ?? this.pod.spec.containers[0]!, this.pod);
      }
      return { path: item.path, content: Buffer.from(value), mode: item.mode ?? mode };
    });
  }

  private downwardField(path: string): string {
    const map = path === 'metadata.labels' ? this.pod.metadata.labels : undefined;
    const annotations = path === 'metadata.annotations' ? this.pod.metadata.annotations : undefined;
    const all = map ?? annotations;
    if (all) {
      return Object.entries(all)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join('\n');
    }
    return fieldValue(path, { pod: this.pod, ...this.ips });
  }
}
