/**
 * `npm run soak -- --minutes N`: builds or reuses the end-to-end tools and the image, as
 * `npm run e2e` does, then runs one soak (soak.ts) and prints its report. Exits non-zero when
 * an invariant broke. See the README's Soak section.
 */
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ensureImage } from '../../image/build.ts';
import { ensureHostPrerequisites } from '../cluster/host-prerequisites.ts';
import { ensureTools, toolEnv } from '../tools/ensure-tools.ts';
import { parseSoakArgs, USAGE } from './options.ts';
import { runSoak } from './soak.ts';

const started = Date.now();
const log = (line: string) =>
  console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}`);

const parsed = parseSoakArgs(process.argv.slice(2));
if (parsed === 'help') {
  console.log(USAGE);
  process.exit(0);
}
ensureHostPrerequisites();
Object.assign(process.env, toolEnv(await ensureTools()));
const image = await ensureImage();
process.env.GITMIRROR_E2E_LOCAL_IMAGE = image.ref;
log(`tools and image ready (${image.ref})`);
const outDir = resolve(
  parsed.out ?? join(tmpdir(), 'soak-results', new Date().toISOString().replace(/[:.]/g, '-')),
);
const result = await runSoak({ ...parsed, outDir, log });
console.log(result.report.markdown);
log(`report: ${result.markdownPath} and ${result.jsonPath}`);
log(`total ${((Date.now() - started) / 60_000).toFixed(1)} min`);
process.exitCode = result.report.passed ? 0 : 1;
