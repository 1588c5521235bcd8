import { GitMirrorError } from '../errors/gitmirror-error.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/**
 * Parses Go-style durations (`90s`, `5m`, `1h30m`) as used in the CRD and environment.
 * A bare number means seconds, the unit people reach for in env vars.
 */
export function parseDuration(text: string, name = 'duration'): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  let total = 0;
  let consumed = 0;
  for (const match of trimmed.matchAll(PART)) {
    if (match.index !== consumed) break;
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
    consumed += match[0].length;
  }
  if (consumed === 0 || consumed !== trimmed.length) {
    throw new GitMirrorError(
      'CONFIG_INVALID',
      `${name}: "${text}" is not a duration (examples: 30s, 5m, 1h)`,
    );
  }
  return Math.round(total);
}
