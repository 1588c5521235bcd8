import { OperatorError } from '../errors.ts';

/** The CRD's duration grammar (its `pattern`): one or more `<number><s|m|h>`, e.g. 1h30m, 90s. */
const DURATION = /^(\d+(\.\d+)?(s|m|h))+$/;
const PART = /(\d+(?:\.\d+)?)(s|m|h)/g;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds of a CRD duration; `field` names it in the error. */
export function parseDuration(text: string, field: string): number {
  if (!DURATION.test(text)) {
    throw new OperatorError(
      'SPEC_INVALID',
      `${field}: "${text.slice(0, 40)}" is not a duration such as 30s, 5m or 1h30m`,
    );
  }
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(PART))
    ms += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  return Math.round(ms);
}
