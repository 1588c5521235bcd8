import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { warmableModules } from '../../scripts/warm-compile-cache.ts';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/warm-compile-cache.ts', import.meta.url));

describe('the image build step that fills the compile cache', () => {
  test('covers both entry points’ modules but never starts them or a worker', () => {
    const modules = warmableModules();
    assert.ok(modules.includes('sidecar/src/server/sidecar.ts'));
    assert.ok(modules.includes('sidecar/src/store/s3-store.ts'), 'the lazily loaded S3 store too');
    assert.ok(modules.includes('operator/src/operator.ts'));
    assert.ok(!modules.some((m) => m.endsWith('/main.ts') || m.endsWith('-worker.ts')));
  });

  test('imports every module without side effects, exits, and leaves a filled cache', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gitmirror-compile-cache-'));
    try {
      // A module that started a server or a timer on import would keep this from exiting.
      const { stdout } = await run(process.execPath, [SCRIPT], {
        env: { ...process.env, NODE_COMPILE_CACHE: dir },
        timeout: 60_000,
      });
      assert.match(stdout, /modules and their dependencies cached/);
      const [versionDir] = await readdir(dir);
      assert.ok(versionDir, 'a per-version cache directory');
      assert.ok((await readdir(join(dir, versionDir))).length > 100, 'our modules and their dependencies');
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
