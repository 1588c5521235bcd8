import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { silentLogger } from '../../../core/log.ts';
import type { LfsUpstream } from '../../../testing/lfs-upstream.ts';
import { LfsMetrics } from '../../src/lfs/lfs-metrics.ts';
import { LocalLfsObjects } from '../../src/lfs/local-objects.ts';
import { LfsObjectCache, type LfsSpace, type OpenedObject } from '../../src/lfs/object-cache.ts';
import type { LfsObjectId } from '../../src/lfs/oid.ts';
import { UpstreamLfs } from '../../src/lfs/upstream-lfs.ts';
import type { SnapshotStore } from '../../src/store/store.ts';

/** One replica's LFS cache: its own data dir, optionally the fleet's store. */
export async function replicaCache(
  dataDir: string,
  options: { store?: SnapshotStore; maxLocalBytes?: number; space?: LfsSpace } = {},
) {
  const local = await LocalLfsObjects.open(join(dataDir, 'lfs'));
  const registry = new Registry();
  const metrics = new LfsMetrics(registry, {
    bytes: () => local.bytesHeld,
    objects: () => local.objectCount,
  });
  const cache = new LfsObjectCache({ local, metrics, logger: silentLogger(), ...options });
  return { cache, local, metrics, registry };
}

/** Opens objects at the stand-in upstream the way a batch answer would have told us to. */
export function upstreamOpener(upstream: LfsUpstream, repo: string) {
  const client = new UpstreamLfs({ httpHosts: new Set([upstream.host]) });
  return (object: LfsObjectId) => async (): Promise<Readable> => {
    const answers = await client.downloadActions({
      lfsUrl: `${upstream.url(`${repo}.git`)}/info/lfs`,
      objects: [object],
    });
    const action = answers.get(object.oid)?.action;
    if (!action) throw new Error(`upstream has no ${object.oid}`);
    return client.openObject(action, object);
  };
}

/** Everything an opened object sends, copied (the sender reuses its buffers); `received` counts as it goes. */
export async function readAll(opened: OpenedObject, received?: (bytes: number) => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      received?.(chunk.length);
      callback();
    },
  });
  await opened.send(sink);
  return Buffer.concat(chunks);
}

export function randomContent(bytes: number): Buffer {
  return randomBytes(bytes);
}

/** A counter's value for one label set, read from the registry the way Prometheus would. */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}) {
  const metric = await registry.getSingleMetric(name)?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return match?.value ?? 0;
}
