import { GitMirrorError } from '../errors/gitmirror-error.ts';

const UNITS: Record<string, number> = { '': 1, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** `1073741824`, `512MiB`, `20 GiB`: a size in bytes (binary units, case-insensitive). */
export function parseByteSize(text: string, name: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(kib|mib|gib|tib)?$/i.exec(text.trim());
  const bytes = match ? Math.floor(Number(match[1]) * UNITS[(match[2] ?? '').toLowerCase()]!) : Number.NaN;
  if (!Number.isSafeInteger(bytes))
    throw new GitMirrorError(
      'CONFIG_INVALID',
      `${name}: "${text}" is not a size (examples: 1073741824, 512MiB, 20GiB)`,
    );
  return bytes;
}
