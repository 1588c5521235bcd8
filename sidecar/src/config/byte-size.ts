import { GitMirrorError } from '../errors/gitmirror-error.ts';

/** Binary units, case-insensitive; `Gi` as Kubernetes quantities write it (the chart passes those on). */
const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
};

/** `1073741824`, `512MiB`, `20 GiB`, `20Gi`: a size in bytes. */
export function parseByteSize(text: string, name: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  const bytes = match && unit !== undefined ? Math.floor(Number(match[1]) * unit) : Number.NaN;
  if (!Number.isSafeInteger(bytes))
    throw new GitMirrorError(
      'CONFIG_INVALID',
      `${name}: "${text}" is not a size in bytes (examples: 0, 1073741824, 512MiB, 20GiB, 20Gi)`,
    );
  return bytes;
}
