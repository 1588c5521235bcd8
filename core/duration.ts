import { ContractError } from './errors.ts';

/**
 * The one duration grammar: one or more `<number><unit>` with unit ms, s, m or h, e.g. 250ms,
 * 90s, 5m, 1h30m, 1.5h — Go's `time.ParseDuration` without its signs and micro units, which is
 * what CEL's `duration()` in the CRD's rules and Kubernetes users expect. The CRD, the chart's
 * values schema, the sidecar's environment and the operator's flags all use it; `core/test`
 * checks that this pattern and `parseDuration` accept exactly the same strings, and that every
 * duration field of the CRD and the values schema carries this pattern.
 */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

const PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/**
 * Milliseconds of a duration; `name` (a field, flag or variable) is quoted in the error. It reads
 * the parts one after another rather than testing DURATION_PATTERN, so the test that compares
 * the two compares two readings of the grammar.
 */
export function parseDuration(text: string, name: string): number {
  let ms = 0;
  let read = 0;
  for (const part of text.matchAll(PART)) {
    if (part.index !== read) break;
    ms += Number(part[1]) * UNIT_MS[part[2] as keyof typeof UNIT_MS];
    read += part[0].length;
  }
  if (read === 0 || read !== text.length) {
    throw new ContractError(
      'BAD_DURATION',
      `${name}: "${text.slice(0, 40)}" is not a duration such as 30s, 5m or 1h30m`,
    );
  }
  return Math.round(ms);
}
