import { GitMirrorError } from '../errors/gitmirror-error.ts';

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
  // Kubernetes quantity suffixes, so a volume's sizeLimit can be passed through as it is written.
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

const SIZE = /^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$/;

/**
 * Bytes of a size such as `1073741824`, `512MiB`, `1.5GiB` or `10Gi` (binary units only: a
 * disk budget in decimal units is one nobody means). `name` is quoted in the error.
 */
export function parseByteSize(text: string, name: string): number {
  const match = SIZE.exec(text.trim());
  const unit = match ? UNITS[match[2]!] : undefined;
  const bytes = match && unit !== undefined ? Math.floor(Number(match[1]) * unit) : Number.NaN;
  if (!Number.isSafeInteger(bytes))
    throw new GitMirrorError(
      'CONFIG_INVALID',
      `${name}: "${text.slice(0, 40)}" is not a size such as 1073741824, 512MiB or 10GiB`,
    );
  return bytes;
}
