import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { compileOnlyModules, warmableModules } from '../../scripts/warm-compile-cache.ts';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/warm-compile-cache.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Node's own report of each compile cache lookup (documented with `module.enableCompileCache`). */
const DEBUG_CACHE = { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' };

describe('the image build step that fills the compile cache', () => {
  test('covers both entry points’ modules but never starts them or a worker', () => {
    const modules = warmableModules();
    assert.ok(modules.includes('sidecar/src/server/sidecar.ts'));
    assert.ok(modules.includes('sidecar/src/store/s3-store.ts'), 'the lazily loaded S3 store too');
    assert.ok(modules.includes('operator/src/operator.ts'));
    assert.ok(!modules.some((m) => m.endsWith('/main.ts') || m.endsWith('-worker.ts')));
    assert.deepEqual(compileOnlyModules(), [
      'operator/src/main.ts',
      'sidecar/src/archive/archive-create-worker.ts',
      'sidecar/src/archive/archive-extract-worker.ts',
      'sidecar/src/main.ts',
    ]);
  });

  test('imports every module without side effects, exits, and leaves a filled cache', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gitmirror-compile-cache-'));
    try {
      // A module that started a server or a timer on import would keep this from exiting.
      const { stdout } = await run(process.execPath, [SCRIPT], {
        env: { ...process.env, NODE_COMPILE_CACHE: dir },
        timeout: 60_000,
      });
      assert.match(
        stdout,
        /modules, 4 entry points and workers \(compiled, not run\) and their dependencies cached/,
      );
      const [versionDir] = await readdir(dir);
      assert.ok(versionDir, 'a per-version cache directory');
      assert.ok((await readdir(join(dir, versionDir))).length > 100, 'our modules and their dependencies');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a sidecar started on the filled cache, and its archive workers, strip no TypeScript', async () => {
    // A module missing from the cache would load the type stripper into the process for good.
    const dir = await mkdtemp(join(tmpdir(), 'gitmirror-compile-cache-'));
    try {
      await run(process.execPath, [SCRIPT], {
        env: { ...process.env, NODE_COMPILE_CACHE: dir },
        timeout: 60_000,
      });
      const env = { ...process.env, ...DEBUG_CACHE, NODE_COMPILE_CACHE: dir };
      // The entry point exits at its first check (a bad listen address), after every import.
      const sidecar = await run(process.execPath, [join(ROOT, 'sidecar/src/main.ts')], {
        env: { ...env, GITMIRROR_LISTEN: 'not-an-address' },
        timeout: 60_000,
      }).catch((err: { stderr: string; stdout: string }) => err);
      assert.match(sidecar.stdout, /GITMIRROR_LISTEN/, 'it got as far as reading its configuration');
      // A worker started without its job data fails at once, after its module graph loaded.
      const worker = await run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { Worker } from 'node:worker_threads'; new Worker(process.argv[1], { execArgv: [] }).on('error', () => {});`,
          join(ROOT, 'sidecar/src/archive/archive-extract-worker.ts'),
        ],
        { env, timeout: 60_000 },
      );
      for (const [name, stderr] of [
        ['sidecar/src/main.ts', sidecar.stderr],
        ['sidecar/src/archive/archive-extract-worker.ts', worker.stderr],
      ] as const) {
        assert.match(
          stderr,
          new RegExp(`retrieving transpile cache for StrippedTypeScript \\S+/${name}\\.\\.\\.success`),
        );
        assert.doesNotMatch(stderr, /no transpile cache for StrippedTypeScript/);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('refuses to run without NODE_COMPILE_CACHE, rather than warm nothing', async () => {
    const env = { ...process.env };
    delete env.NODE_COMPILE_CACHE;
    await assert.rejects(
      run(process.execPath, [SCRIPT], { env, timeout: 60_000 }),
      (err: { code?: number }) => {
        assert.equal(err.code, 2);
        return true;
      },
    );
  });
});
