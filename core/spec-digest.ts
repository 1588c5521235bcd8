import { createHash } from 'node:crypto';
import type { MirrorSpec } from './admin-api.ts';

/**
 * A digest of a mirror's desired config, credentials included, echoed in `MirrorStatus`
 * so the operator can tell whether a sidecar already runs a spec — also after a leader
 * change, when nothing is remembered — without the sidecar ever echoing a secret. Keys are
 * sorted so both sides get the same digest whatever order they build the object in.
 */
export function mirrorSpecDigest(spec: MirrorSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 32);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
