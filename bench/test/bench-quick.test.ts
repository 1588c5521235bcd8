import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * The benchmark end to end on a tiny repository (`--quick`): every documented JSON key is
 * there and is a number. It checks the harness, never the timings. Not part of `npm test`
 * (about 30 s of real processes on two cores, and MinIO only if already built); run it with
 * `node --test 'bench/test/*.test.ts'`.
 */

const RUN = fileURLToPath(new URL('../run.ts', import.meta.url));
const exec = promisify(execFile);

const REQUIRED = [
  'coldStart.cloneMirrorSeconds',
  'coldStart.restoreFileSeconds',
  'coldStart.restoreS3Seconds',
  'restorePipeline.cliSeconds',
  'restorePipeline.sidecarSeconds',
  'snapshot.cliSeconds',
  'snapshot.sidecarSeconds',
  'snapshot.eventLoopP99Ms',
  'snapshot.eventLoopMaxMs',
  'serve.directSeconds',
  'serve.sidecarSeconds',
  'serve.concurrent16.p50Seconds',
  'serve.concurrent16.p99Seconds',
  'serve.concurrent16.failures',
  'serve.concurrent16.peakRssMiB',
  'serve.memory.idleRssMiB',
  'serve.memory.oneClientPeakRssMiB',
  'lfs.directSeconds',
  'lfs.cacheSeconds',
  'lfs.upstreamBytesWhileWarm',
  'serve.packCache.fanOut.p50Seconds',
  'serve.packCache.generationsPerRound',
  'serve.packCache.cpuPerGeneratedSeconds',
  'serve.packCache.cpuPerCachedSeconds',
  'serve.packCache.hitSeconds',
  'serve.packCache.concurrentHits.p50Seconds',
];

function at(value: unknown, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((v, key) => (v as Record<string, unknown> | undefined)?.[key], value);
}

test('npm run bench -- --quick writes every documented key as a number', { timeout: 180_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gitmirror-bench-test-'));
  try {
    const out = join(dir, 'bench.json');
    const { stdout } = await exec(process.execPath, [RUN, '--quick', '--s3', 'auto', '--out', out], {
      maxBuffer: 1 << 24,
    });
    const report = JSON.parse(await readFile(out, 'utf8')) as unknown;
    for (const key of REQUIRED) {
      const value = at(report, key);
      // Without a built lfstest-gitserver there is no LFS figure, and the report must say why.
      if (key.startsWith('lfs.') && typeof at(report, 'lfs.skipped') === 'string') continue;
      // Without a built MinIO the S3 figure is null, and the report must say why.
      if (key === 'coldStart.restoreS3Seconds' && value === null) {
        assert.equal(
          typeof at(report, 'coldStart.restoreS3Skipped'),
          'string',
          'null S3 figure without a reason',
        );
        continue;
      }
      assert.equal(typeof value, 'number', `${key} is ${JSON.stringify(value)}`);
      assert.ok(Number.isFinite(value), `${key} is not finite`);
    }
    assert.equal(at(report, 'serve.concurrent16.failures'), 0);
    if (typeof at(report, 'lfs.upstreamBytesWhileWarm') === 'number')
      assert.equal(
        at(report, 'lfs.upstreamBytesWhileWarm'),
        0,
        'the warm pulls moved no LFS byte from upstream',
      );
    assert.equal(
      at(report, 'serve.packCache.generationsPerRound'),
      1,
      'identical requests shared one pack-objects',
    );
    assert.match(stdout, /^\| measurement \| baseline \| gitmirror \|/m);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
