import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureImage } from '../image/build.ts';
import { ensureHostPrerequisites } from './cluster/host-prerequisites.ts';
import { ensureTools, toolEnv } from './tools/ensure-tools.ts';

/**
 * `npm run e2e`: build or reuse the external servers and the project's image (`npm run image`;
 * seconds when nothing changed), then run every `e2e/**\/*.test.ts` (or the files given as
 * arguments) with the tools' paths and the image's ref in the environment.
 */

const SUITE_TIMEOUT_MS = 60 * 60 * 1000;
const TEST_TIMEOUT_MS = 15 * 60 * 1000;
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

ensureHostPrerequisites();
const tools = toolEnv(await ensureTools());
// Against an existing cluster the image is the one GITMIRROR_E2E_IMAGE names, built elsewhere.
const image = process.env.GITMIRROR_E2E_KUBECONFIG ? undefined : await ensureImage();
const env = { ...process.env, ...tools, ...(image && { GITMIRROR_E2E_LOCAL_IMAGE: image.ref }) };
const files = process.argv.slice(2);
const args = [
  '--test',
  '--test-concurrency=1',
  `--test-timeout=${TEST_TIMEOUT_MS}`,
  ...(files.length > 0 ? files : ['e2e/**/*.test.ts']),
];

const child = spawn(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
const timer = setTimeout(() => {
  console.error(`e2e: suite exceeded ${SUITE_TIMEOUT_MS / 60_000} min, stopping it`);
  child.kill('SIGTERM');
  setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
}, SUITE_TIMEOUT_MS);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.once('exit', (code, signal) => {
  clearTimeout(timer);
  process.exitCode = code ?? (signal ? 1 : 0);
});
