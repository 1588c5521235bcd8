import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureHostPrerequisites } from './cluster/host-prerequisites.ts';
import { ensureTools, toolEnv } from './tools/ensure-tools.ts';

/**
 * `npm run e2e`: build or reuse the external servers, then run every `e2e/**\/*.test.ts`
 * (or the files given as arguments) with the tools' paths in the environment.
 */

const SUITE_TIMEOUT_MS = 60 * 60 * 1000;
const TEST_TIMEOUT_MS = 15 * 60 * 1000;
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

ensureHostPrerequisites();
const env = { ...process.env, ...toolEnv(await ensureTools()) };
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
