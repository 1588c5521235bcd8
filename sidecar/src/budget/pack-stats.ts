import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** One pack of a repository, as geometric repack weighs it. */
export interface PackInfo {
  name: string;
  objects: number;
  /** Bytes of the `.pack`, its `.idx`, and the `.rev` when there is one. */
  bytes: number;
  /** A `.keep` file pins it: repack never rolls it up. */
  kept: boolean;
}

/** Everything under objects/pack that a repack rewrites beside the packs themselves. */
export interface PackDirStats {
  packs: PackInfo[];
  /** multi-pack-index and bitmaps (of the MIDX and of packs): written anew by every repack. */
  indexBytes: number;
}

const IDX_V2_MAGIC = 0xff744f63;

/**
 * The packs of a repository's `objects/pack`, with object counts read from each `.idx` header
 * (the last fan-out entry: 4 bytes per pack, no git process) and sizes from `stat`.
 */
export async function readPackDir(repoDir: string): Promise<PackDirStats> {
  const dir = join(repoDir, 'objects', 'pack');
  const names = await readdir(dir).catch(() => [] as string[]);
  const sizeOf = async (name: string) => (await stat(join(dir, name)).catch(() => undefined))?.size ?? 0;
  const packs: PackInfo[] = [];
  let indexBytes = 0;
  for (const name of names) {
    if (name === 'multi-pack-index' || name.endsWith('.bitmap')) indexBytes += await sizeOf(name);
    if (!name.startsWith('pack-') || !name.endsWith('.idx')) continue;
    const base = name.slice(0, -'.idx'.length);
    if (!names.includes(`${base}.pack`)) continue;
    const objects = await idxObjectCount(join(dir, name));
    if (objects === undefined) continue;
    const bytes = (await sizeOf(`${base}.pack`)) + (await sizeOf(name)) + (await sizeOf(`${base}.rev`));
    packs.push({ name: base, objects, bytes, kept: names.includes(`${base}.keep`) });
  }
  return { packs, indexBytes };
}

/** Objects in a pack, from its index: version 2 (magic, version, fan-out) or the headerless version 1. */
async function idxObjectCount(path: string): Promise<number | undefined> {
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return undefined;
  try {
    const head = Buffer.alloc(8 + 256 * 4);
    const { bytesRead } = await file.read(head, 0, head.length, 0);
    if (bytesRead < 256 * 4) return undefined;
    const v2 = head.readUInt32BE(0) === IDX_V2_MAGIC;
    if (v2 && bytesRead < head.length) return undefined;
    return head.readUInt32BE((v2 ? 8 : 0) + 255 * 4);
  } finally {
    await file.close();
  }
}
