import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { isSabotage, SABOTAGES, type Sabotage } from './sabotage.ts';
import { MIN_MINUTES } from './schedule.ts';

export const USAGE = `npm run soak -- [options]

  --minutes N      length of the load and chaos (default 60; at least 4; under 60 is a short run)
  --seed N         the chaos schedule's and the load's seed (default: random, printed)
  --rate N         load operations started per minute (default 12)
  --out DIR        where soak.json and soak.md go (default: soak-results/<time> in the OS temp dir)
  --sabotage LIST  comma-separated broken builds, to prove the invariants catch them (testing only):
                   ${Object.keys(SABOTAGES).join(', ')}

Run it under the end-to-end lock: flock /work/.e2e.lock npm run soak -- --minutes 5
`;

export interface SoakCliOptions {
  minutes: number;
  seed: number;
  rate: number;
  out?: string;
  sabotage: Sabotage[];
}

function positiveNumber(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, not "${value}"`);
  return n;
}

export function parseSoakArgs(argv: string[]): SoakCliOptions | 'help' {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      minutes: { type: 'string' },
      seed: { type: 'string' },
      rate: { type: 'string' },
      out: { type: 'string' },
      sabotage: { type: 'string' },
    },
  });
  if (v.help) return 'help';
  const minutes = positiveNumber(v.minutes, 'minutes') ?? 60;
  if (minutes < MIN_MINUTES)
    throw new Error(`--minutes must be at least ${MIN_MINUTES}: the chaos schedule needs the room`);
  const seed = v.seed === undefined ? randomInt(2 ** 31) : Number(v.seed);
  if (!Number.isInteger(seed) || seed < 0)
    throw new Error(`--seed must be a non-negative integer, not "${v.seed}"`);
  const sabotage = (v.sabotage ?? '').split(',').filter(Boolean);
  const unknown = sabotage.filter((s) => !isSabotage(s));
  if (unknown.length)
    throw new Error(`unknown --sabotage ${unknown.join(', ')}; known: ${Object.keys(SABOTAGES).join(', ')}`);
  return {
    minutes,
    seed,
    rate: positiveNumber(v.rate, 'rate') ?? 12,
    out: v.out,
    sabotage: sabotage as Sabotage[],
  };
}
