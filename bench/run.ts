/**
 * `npm run bench`: cold start, restore, snapshot and serving of a large generated
 * repository, each measured against raw git or the raw CLI pipeline on the same data.
 * See `--help` and the README's Performance section.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { measureColdStart } from './cold-start.ts';
import type { BenchContext } from './context.ts';
import { LFS_OBJECTS, lfsServerBinary, measureLfsPull } from './lfs.ts';
import { type BenchOptions, parseBenchArgs, USAGE } from './options.ts';
import { ensureBenchRepo, paramsHash } from './repo-cache.ts';
import { type BenchReport, checkTargets, machineInfo, markdownTable } from './report.ts';
import { measureRestorePipeline } from './restore-pipeline.ts';
import { type BenchS3, startSeededS3 } from './s3.ts';
import { measureServing } from './serving.ts';
import { type BenchSidecar, spawnSidecar, waitForMetric, warmCompileCache } from './sidecar-process.ts';
import { measureSnapshot } from './snapshot.ts';
import { startHttpBackend } from './upstream.ts';

const HOUR_MS = 60 * 60_000;

async function main(options: BenchOptions): Promise<BenchReport> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const log = (line: string) =>
    console.error(`[${((performance.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}`);
  const machine = await machineInfo();
  const phase = (name: string) => {
    machine.loadBeforePhase[name] = Math.round(loadavg()[0]! * 100) / 100;
  };
  log(`machine: ${machine.nproc} × ${machine.cpuModel}, load ${machine.loadAtStart.join(' ')}`);

  const repo = await ensureBenchRepo(options.params, log);
  const upstream = await startHttpBackend(repo.root);
  const workDir = await mkdtemp(join(resolve(options.workDir ?? tmpdir()), 'gitmirror-bench-'));
  log(`scratch dir ${workDir}`);
  // Filled afresh each run, as the image build fills it: a cache kept between runs would also
  // hold what earlier sidecars compiled at run time, which a new pod's read-only cache does not.
  const compileCache = await warmCompileCache(join(workDir, 'node-compile-cache'));
  // The restore pipeline runs in this process; its worker threads read this at start-up, so
  // they load their modules as the image's sidecar does.
  process.env.NODE_COMPILE_CACHE = compileCache;
  const ctx: BenchContext = {
    workDir,
    upstreamUrl: upstream.url(repo.path),
    upstreamHost: upstream.host,
    repoId: `${upstream.host}/${repo.path.replace(/\.git$/, '')}`,
    runs: options.runs,
    concurrency: options.concurrency,
    timeoutMs: HOUR_MS,
    log,
    compileCache,
    sidecarNodeArgs: (label) =>
      options.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(options.profileDir, label)}`] : [],
  };
  const storeRoot = join(workDir, 'store');
  const writerData = join(workDir, 'writer');
  const mirrorDir = join(writerData, 'mirrors', upstream.host, repo.path);
  const baseEnv = {
    GITMIRROR_MIRRORS: ctx.upstreamUrl,
    GITMIRROR_HTTP_HOSTS: upstream.host,
    GITMIRROR_SNAPSHOT_STORE: `file://${storeRoot}`,
    // Periodic jobs would land at random points of the measurements.
    GITMIRROR_FETCH_INTERVAL: '24h',
    GITMIRROR_REPACK_INTERVAL: '24h',
  };
  const cleanup: (() => Promise<unknown>)[] = [() => upstream.close()];
  let sidecar: BenchSidecar | undefined;
  let s3: BenchS3 | undefined;
  try {
    await mkdir(storeRoot, { recursive: true });
    log('writer sidecar: clone from upstream, repack, first snapshot');
    sidecar = await spawnSidecar({
      env: { ...baseEnv, GITMIRROR_DATA_DIR: writerData },
      logFile: join(workDir, 'sidecar-writer.log'),
      compileCache,
      nodeArgs: ctx.sidecarNodeArgs('writer'),
    });
    cleanup.push(() => sidecar!.stop());
    const sidecarCloneSeconds = await sidecar.waitReady(HOUR_MS);
    log(`  ready by clone in ${sidecarCloneSeconds.toFixed(1)} s`);
    // Snapshots must be of the mirror as it serves: bitmaps and multi-pack-index included.
    await waitForMetric(
      sidecar,
      'gitmirror_git_operations_total',
      { operation: 'repack', outcome: 'success' },
      1,
      HOUR_MS,
    );
    log('  repacked');

    phase('snapshot');
    const snapshot = await measureSnapshot(
      ctx,
      sidecar,
      { mirrorDir, storeRepoDir: join(storeRoot, upstream.host, repo.path.replace(/\.git$/, '')) },
      options.loadClients,
    );
    phase('restore');
    const restorePipeline = await measureRestorePipeline(ctx, storeRoot);
    await sidecar.stop();

    log(`S3 server (--s3 ${options.s3})`);
    const seeded = await startSeededS3(options.s3, storeRoot).catch((err: unknown) => ({
      skipped: `S3 server failed to start: ${err instanceof Error ? err.message : String(err)}`,
    }));
    if ('skipped' in seeded) log(`  no S3 figure: ${seeded.skipped}`);
    else {
      s3 = seeded;
      cleanup.push(() => seeded.stop());
    }
    log('cold start: clone --mirror vs cold sidecar restore → ready');
    phase('cold start');
    const coldStart = await measureColdStart(ctx, {
      file: { GITMIRROR_SNAPSHOT_STORE: baseEnv.GITMIRROR_SNAPSHOT_STORE },
      s3: s3?.sidecarEnv,
      s3Skipped: 'skipped' in seeded ? seeded.skipped : undefined,
    });
    await s3?.stop();

    log('serving: a fresh sidecar on the writer mirror vs git http-backend on the same directory');
    // TTL 0: identical requests in flight share a generation, completed packs are not kept.
    sidecar = await spawnSidecar({
      env: { ...baseEnv, GITMIRROR_DATA_DIR: writerData, GITMIRROR_PACK_CACHE_TTL: '0s' },
      logFile: join(workDir, 'sidecar-serving.log'),
      compileCache,
      nodeArgs: ctx.sidecarNodeArgs('serving'),
    });
    await sidecar.waitReady(HOUR_MS);
    const direct = await startHttpBackend(join(writerData, 'mirrors', upstream.host));
    cleanup.push(() => direct.close());
    phase('serving');
    let warmStarts = 0;
    const startWarm = async () => {
      const label = `serving-cache-${++warmStarts}`;
      const warm = await spawnSidecar({
        env: { ...baseEnv, GITMIRROR_DATA_DIR: writerData },
        logFile: join(workDir, `sidecar-${label}.log`),
        compileCache,
        nodeArgs: ctx.sidecarNodeArgs(label),
      });
      await warm.waitReady(HOUR_MS);
      return warm;
    };
    const serve = await measureServing(ctx, sidecar, direct, mirrorDir, options.rounds, async () => {
      await sidecar!.stop();
      return startWarm();
    });
    await sidecar.stop();

    log(`LFS: git lfs pull through a warm sidecar vs straight from lfstest-gitserver (--lfs ${options.lfs})`);
    phase('lfs');
    const binary = await lfsServerBinary(options.lfs);
    const lfs =
      typeof binary === 'string'
        ? await measureLfsPull(ctx, {
            binary,
            objects: LFS_OBJECTS[options.mode.startsWith('quick') ? 'quick' : 'default'],
          })
        : binary;
    if ('skipped' in lfs) log(`  no LFS figure: ${lfs.skipped}`);

    const { concurrent, ...serveRest } = serve;
    const partial = {
      coldStart: { ...coldStart, sidecarCloneSeconds },
      restorePipeline,
      snapshot,
      serve: { ...serveRest, [`concurrent${options.concurrency}`]: concurrent },
      lfs,
    };
    return {
      schema: 1,
      startedAt,
      durationSeconds: Math.round((performance.now() - started) / 1000),
      mode: options.mode,
      runs: options.runs,
      machine,
      repo: {
        params: repo.params,
        hash: paramsHash(repo.params),
        cached: !repo.generated,
        generateSeconds: repo.generateSeconds,
        ...repo.stats,
        archiveBytes: restorePipeline.archiveBytes,
      },
      ...partial,
      targets: checkTargets(partial, options.concurrency),
    };
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => {});
    if (options.keep) log(`kept ${workDir}`);
    else await rm(workDir, { recursive: true, force: true });
  }
}

const options = (() => {
  try {
    return parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();
function printReport(report: BenchReport, clients: number): void {
  console.log(`\n${markdownTable(report, clients)}`);
  const missed = report.targets.filter((t) => t.met === false);
  if (missed.length)
    console.log(`\nTargets missed: ${missed.map((t) => `${t.name} (${t.value})`).join('; ')}`);
}

if (options === 'help') {
  console.log(USAGE);
} else if ('render' in options) {
  const report = JSON.parse(await readFile(options.render, 'utf8')) as BenchReport;
  const clients = Number(
    Object.keys(report.serve)
      .find((k) => /^concurrent\d+$/.test(k) && k !== 'concurrent1')
      ?.slice(10),
  );
  printReport({ ...report, targets: checkTargets(report, clients) }, clients);
} else {
  const report = await main(options);
  if (options.out) await writeFile(options.out, `${JSON.stringify(report, null, 2)}\n`);
  printReport(report, options.concurrency);
}
