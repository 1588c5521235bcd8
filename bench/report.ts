import { execFile } from 'node:child_process';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { promisify } from 'node:util';
import type { ColdStartResult } from './cold-start.ts';
import type { LfsPullResult } from './lfs.ts';
import type { RepoParams, RepoStats } from './repo-cache.ts';
import type { RestorePipelineResult } from './restore-pipeline.ts';
import type { ServingResult } from './serving.ts';
import type { SnapshotResult } from './snapshot.ts';

const exec = promisify(execFile);

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  git: string;
  zstd: string;
  tar: string;
  /** 1, 5 and 15 minute load averages when the run started. */
  loadAtStart: number[];
  /**
   * 1-minute load average as each phase began: the machine may be shared, and a figure
   * taken under load is worth less. (Load at the end would mostly show this benchmark's own
   * 16 concurrent clones.)
   */
  loadBeforePhase: Record<string, number>;
}

async function firstLine(command: string, args: string[]): Promise<string> {
  return exec(command, args).then(
    (r) => (r.stdout || r.stderr).split('\n')[0]!.trim(),
    () => 'unknown',
  );
}

export async function machineInfo(): Promise<MachineInfo> {
  return {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    git: (await firstLine('git', ['--version'])).replace(/^git version /, ''),
    zstd: (await firstLine('zstd', ['-V'])).replace(/^.*?(v\d[\d.]*).*$/, '$1'),
    tar: (await firstLine('tar', ['--version'])).replace(/^tar \(GNU tar\) /, 'GNU tar '),
    loadAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    loadBeforePhase: {},
  };
}

export interface BenchReport {
  schema: 1;
  startedAt: string;
  durationSeconds: number;
  mode: string;
  /** Samples behind each median. */
  runs: number;
  machine: MachineInfo;
  repo: { params: RepoParams; hash: string; cached: boolean; generateSeconds?: number } & RepoStats & {
      archiveBytes: number;
    };
  coldStart: ColdStartResult;
  restorePipeline: RestorePipelineResult;
  snapshot: SnapshotResult;
  /** `concurrent16` (for 16 clients) holds what ServingResult calls `concurrent`. */
  serve: Omit<ServingResult, 'concurrent'> & { [key: `concurrent${number}`]: unknown };
  /** `git lfs pull` warm through the cache vs straight from the LFS server; skipped says why not. */
  lfs?: LfsPullResult | { skipped: string };
  targets: TargetCheck[];
}

function concurrentOf(serve: BenchReport['serve'], clients: number): ServingResult['concurrent'] {
  return serve[`concurrent${clients}`] as ServingResult['concurrent'];
}

export interface TargetCheck {
  name: string;
  /** The figure the target is about, as printed. */
  value: string;
  target: string;
  /** null when the figure could not be measured. */
  met: boolean | null;
}

const s = (seconds: number) => `${seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1)} s`;
// Three decimals: a ratio of 1.2033 against a 1.2 target must not print as 1.20.
const x = (ratio: number) => `${ratio.toFixed(3)}x`;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

export function checkTargets(
  r: Pick<BenchReport, 'coldStart' | 'restorePipeline' | 'snapshot' | 'serve' | 'lfs'>,
  clients: number,
) {
  const c = concurrentOf(r.serve, clients);
  const speedup = (restore: number | null) => (restore ? r.coldStart.cloneMirrorSeconds / restore : null);
  const file = speedup(r.coldStart.restoreFileSeconds);
  const s3 = speedup(r.coldStart.restoreS3Seconds);
  const ratio = (a: number, b: number) => a / b;
  // Reports written before the memory figures have none.
  const oneClientRss = r.serve.memory?.oneClientPeakRssMiB ?? Number.NaN;
  const checks: TargetCheck[] = [
    {
      name: 'restore-to-ready (file) vs clone --mirror',
      value: `${file!.toFixed(1)}x faster`,
      target: '≥ 10x faster',
      met: file! >= 10,
    },
    {
      name: 'restore-to-ready (S3) vs clone --mirror',
      value: s3 === null ? `not measured: ${r.coldStart.restoreS3Skipped}` : `${s3.toFixed(1)}x faster`,
      target: '≥ 8x faster',
      met: s3 === null ? null : s3 >= 8,
    },
    {
      name: 'restore pipeline vs zstd -dc | tar -x',
      value: x(ratio(r.restorePipeline.sidecarSeconds, r.restorePipeline.cliSeconds)),
      target: '≤ 1.2x',
      met: ratio(r.restorePipeline.sidecarSeconds, r.restorePipeline.cliSeconds) <= 1.2,
    },
    {
      name: 'snapshot vs tar | zstd -T0 -3',
      value: x(ratio(r.snapshot.sidecarSeconds, r.snapshot.cliSeconds)),
      target: '≤ 1.2x',
      met: ratio(r.snapshot.sidecarSeconds, r.snapshot.cliSeconds) <= 1.2,
    },
    {
      name: 'event-loop p99 during snapshot + clones',
      value: `${r.snapshot.eventLoopP99Ms.toFixed(1)} ms`,
      target: '< 20 ms',
      met: r.snapshot.eventLoopP99Ms < 20,
    },
    {
      name: 'event-loop max during snapshot + clones',
      value: `${r.snapshot.eventLoopMaxMs.toFixed(1)} ms`,
      target: '< 50 ms',
      met: r.snapshot.eventLoopMaxMs < 50,
    },
    {
      name: 'clone via sidecar vs via http-backend',
      value: x(ratio(r.serve.sidecarSeconds, r.serve.directSeconds)),
      target: '≤ 1.1x',
      met: ratio(r.serve.sidecarSeconds, r.serve.directSeconds) <= 1.1,
    },
    {
      name: 'upload-pack via sidecar vs via http-backend',
      value: x(ratio(r.serve.uploadPack.sidecarSeconds, r.serve.uploadPack.directSeconds)),
      target: '≤ 1.1x',
      met: ratio(r.serve.uploadPack.sidecarSeconds, r.serve.uploadPack.directSeconds) <= 1.1,
    },
    {
      name: `${clients} concurrent identical upload-packs, empty pack cache, vs http-backend (p50)`,
      value: `${(c.uploadPack.direct.p50Seconds / r.serve.packCache.fanOut.p50Seconds).toFixed(1)}x faster`,
      target: '≥ 6x faster',
      met: c.uploadPack.direct.p50Seconds / r.serve.packCache.fanOut.p50Seconds >= 6,
    },
    {
      name: 'CPU per cached upload-pack vs per generated one',
      value: x(r.serve.packCache.cpuPerCachedSeconds / r.serve.packCache.cpuPerGeneratedSeconds),
      target: '< 0.1x',
      met: r.serve.packCache.cpuPerCachedSeconds / r.serve.packCache.cpuPerGeneratedSeconds < 0.1,
    },
    {
      name: `${clients} concurrent identical upload-packs: pack-objects runs`,
      value: String(r.serve.packCache.generationsPerRound),
      target: '1',
      met: r.serve.packCache.generationsPerRound === 1,
    },
    {
      name: `${clients} concurrent clones: failures`,
      value: String(c.failures),
      target: '0',
      met: c.failures === 0,
    },
    {
      name: '1 client: sidecar peak RSS',
      value: Number.isNaN(oneClientRss) ? 'not measured' : `${oneClientRss.toFixed(0)} MiB`,
      target: '≤ 96 MiB',
      met: Number.isNaN(oneClientRss) ? null : oneClientRss <= 96,
    },
    {
      name: `${clients} concurrent clients: sidecar peak RSS`,
      value: `${c.peakRssMiB.toFixed(0)} MiB`,
      target: '≤ 128 MiB',
      met: c.peakRssMiB <= 128,
    },
    lfsCheck(r.lfs),
  ];
  return checks;
}

const LFS_CHECK = 'git lfs pull via the warm cache vs straight from the LFS server';

function lfsCheck(lfs: BenchReport['lfs']): TargetCheck {
  const name = LFS_CHECK;
  if (!lfs || 'skipped' in lfs)
    return { name, value: `not measured: ${lfs?.skipped ?? 'no LFS figure'}`, target: '≤ 1.1x', met: null };
  const ratio = lfs.cacheSeconds / lfs.directSeconds;
  // Warm means warm: a pull that still moved bytes from upstream does not count.
  return { name, value: x(ratio), target: '≤ 1.1x', met: ratio <= 1.1 && lfs.upstreamBytesWhileWarm === 0 };
}

function lfsRow(lfs: BenchReport['lfs'], check: TargetCheck, verdict: string): string[] {
  const what = 'git lfs pull, warm cache';
  if (!lfs || 'skipped' in lfs) return [what, '—', 'not measured', '—', '≤ 1.1x', verdict];
  return [
    `${what} (${lfs.objects} objects, ${mib(lfs.bytes)}; ${mib(lfs.upstreamBytesWhileWarm)} from upstream)`,
    `lfstest-gitserver ${s(lfs.directSeconds)}`,
    s(lfs.cacheSeconds),
    check.value,
    '≤ 1.1x',
    verdict,
  ];
}

/** The pack cache's own rows: packs from disk, CPU per request, generations shared. */
function packCacheRows(
  r: BenchReport,
  c: ServingResult['concurrent'],
  clients: number,
  verdict: (name: string) => string,
): string[][] {
  const p = r.serve.packCache;
  const fanOut = `${clients} concurrent identical upload-packs, empty pack cache, vs http-backend (p50)`;
  return [
    [
      `upload-pack → /dev/null, ${clients} concurrent identical, empty pack cache (p50 / p99)`,
      `http-backend ${s(c.uploadPack.direct.p50Seconds)} / ${s(c.uploadPack.direct.p99Seconds)}`,
      `${s(p.fanOut.p50Seconds)} / ${s(p.fanOut.p99Seconds)}`,
      `${(c.uploadPack.direct.p50Seconds / p.fanOut.p50Seconds).toFixed(1)}x faster`,
      '≥ 6x faster',
      verdict(fanOut),
    ],
    [
      `upload-pack → /dev/null, ${clients} concurrent, all from the pack cache (p50 / p99)`,
      `http-backend ${s(c.uploadPack.direct.p50Seconds)} / ${s(c.uploadPack.direct.p99Seconds)}`,
      `${s(p.concurrentHits.p50Seconds)} / ${s(p.concurrentHits.p99Seconds)}`,
      `${(c.uploadPack.direct.p50Seconds / p.concurrentHits.p50Seconds).toFixed(1)}x faster`,
      '—',
      '',
    ],
    [
      'upload-pack → /dev/null, 1 client, from the pack cache',
      `http-backend ${s(r.serve.uploadPack.directSeconds)}`,
      s(p.hitSeconds),
      `${(r.serve.uploadPack.directSeconds / p.hitSeconds).toFixed(1)}x faster`,
      '—',
      '',
    ],
    [
      'CPU per upload-pack, sidecar + children',
      `pack generated ${s(p.cpuPerGeneratedSeconds)}`,
      `from the cache ${s(p.cpuPerCachedSeconds)}`,
      x(p.cpuPerCachedSeconds / p.cpuPerGeneratedSeconds),
      '< 0.1x',
      verdict('CPU per cached upload-pack vs per generated one'),
    ],
    [
      `pack-objects runs for ${clients} concurrent identical upload-packs`,
      `http-backend ${clients}`,
      String(p.generationsPerRound),
      '—',
      '1',
      verdict(`${clients} concurrent identical upload-packs: pack-objects runs`),
    ],
  ];
}

/** The markdown table the README's Performance section shows. */
export function markdownTable(r: BenchReport, clients: number): string {
  const c = concurrentOf(r.serve, clients);
  const verdict = (name: string) => {
    const met = r.targets.find((t) => t.name === name)?.met;
    return met === null || met === undefined ? 'n/a' : met ? 'met' : '**missed**';
  };
  const target = (prefix: string) => r.targets.find((c) => c.name.startsWith(prefix))!;
  const cell = (prefix: string) => target(prefix).value;
  const bothMet = (a: TargetCheck, b: TargetCheck) =>
    a.met === null || b.met === null ? 'n/a' : a.met && b.met ? 'met' : '**missed**';
  const rows: string[][] = [
    [
      'cold start → ready, file store',
      `clone --mirror ${s(r.coldStart.cloneMirrorSeconds)}`,
      s(r.coldStart.restoreFileSeconds),
      cell('restore-to-ready (file)'),
      '≥ 10x faster',
      verdict(target('restore-to-ready (file)').name),
    ],
    [
      'cold start → ready, S3 (MinIO)',
      `clone --mirror ${s(r.coldStart.cloneMirrorSeconds)}`,
      r.coldStart.restoreS3Seconds === null ? 'not measured' : s(r.coldStart.restoreS3Seconds),
      r.coldStart.restoreS3Seconds === null ? '—' : cell('restore-to-ready (S3)'),
      '≥ 8x faster',
      verdict(target('restore-to-ready (S3)').name),
    ],
    [
      'restore pipeline (verify + zstd + untar)',
      `zstd -dc \\| tar -x ${s(r.restorePipeline.cliSeconds)}`,
      s(r.restorePipeline.sidecarSeconds),
      cell('restore pipeline'),
      '≤ 1.2x',
      verdict(target('restore pipeline').name),
    ],
    [
      'snapshot (tar + zstd + sha256 + store)',
      `tar \\| zstd -T0 -3 ${s(r.snapshot.cliSeconds)}`,
      s(r.snapshot.sidecarSeconds),
      cell('snapshot vs'),
      '≤ 1.2x',
      verdict(target('snapshot vs').name),
    ],
    [
      `event loop during snapshot + ${r.snapshot.loadClients} clones`,
      `idle p99 ${r.snapshot.idleEventLoopP99Ms.toFixed(1)} ms`,
      `p99 ${r.snapshot.eventLoopP99Ms.toFixed(1)} ms, max ${r.snapshot.eventLoopMaxMs.toFixed(1)} ms`,
      '—',
      'p99 < 20 ms, max < 50 ms',
      bothMet(target('event-loop p99'), target('event-loop max')),
    ],
    [
      'clone, 1 client (pack generated)',
      `http-backend ${s(r.serve.directSeconds)}`,
      s(r.serve.sidecarSeconds),
      cell('clone via sidecar'),
      '≤ 1.1x',
      verdict(target('clone via sidecar').name),
    ],
    [
      'upload-pack → /dev/null, 1 client (pack generated)',
      `http-backend ${s(r.serve.uploadPack.directSeconds)}`,
      s(r.serve.uploadPack.sidecarSeconds),
      cell('upload-pack via sidecar'),
      '≤ 1.1x',
      verdict(target('upload-pack via sidecar').name),
    ],
    [
      `clone, ${clients} concurrent (p50 / p99)`,
      `http-backend ${s(c.direct.p50Seconds)} / ${s(c.direct.p99Seconds)}`,
      `${s(c.p50Seconds)} / ${s(c.p99Seconds)}`,
      x(c.p50Seconds / c.direct.p50Seconds),
      '—',
      '',
    ],
    [
      `upload-pack → /dev/null, ${clients} concurrent, pack cache TTL 0 (p50 / p99)`,
      `http-backend ${s(c.uploadPack.direct.p50Seconds)} / ${s(c.uploadPack.direct.p99Seconds)}`,
      `${s(c.uploadPack.p50Seconds)} / ${s(c.uploadPack.p99Seconds)}`,
      `${(c.uploadPack.direct.p50Seconds / c.uploadPack.p50Seconds).toFixed(1)}x faster`,
      '—',
      '',
    ],
    [
      `${clients} concurrent clones: failures`,
      `http-backend ${c.direct.failures}`,
      String(c.failures),
      '—',
      '0',
      verdict(`${clients} concurrent clones: failures`),
    ],
    [
      '1 client: sidecar peak RSS',
      r.serve.memory ? `idle ${mib(r.serve.memory.idleRssMiB * 2 ** 20)}` : '—',
      cell('1 client: sidecar peak RSS'),
      '—',
      '≤ 96 MiB',
      verdict('1 client: sidecar peak RSS'),
    ],
    [
      `${clients} concurrent clients: sidecar peak RSS`,
      r.serve.memory ? `idle ${mib(r.serve.memory.idleRssMiB * 2 ** 20)}` : '—',
      `${c.peakRssMiB.toFixed(0)} MiB`,
      '—',
      '≤ 128 MiB',
      verdict(`${clients} concurrent clients: sidecar peak RSS`),
    ],
    lfsRow(r.lfs, target('git lfs pull'), verdict(target('git lfs pull').name)),
    ...packCacheRows(r, c, clients, verdict),
  ];
  const header = ['measurement', 'baseline', 'gitmirror', 'ratio', 'target', ''];
  const lines = [header, header.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`);
  const m = r.machine;
  const repo = r.repo;
  return [
    ...lines,
    '',
    `Repository: ${repo.objects.toLocaleString('en-US')} objects, ${mib(repo.packBytes)} packed, ${repo.refs.toLocaleString('en-US')} refs, ${repo.commits.toLocaleString('en-US')} commits; snapshot ${mib(repo.archiveBytes)} tar.zst. ` +
      `Medians of ${r.runs} run${r.runs === 1 ? '' : 's'} (concurrency: ${c.samples} clones in ${c.samples / clients} round(s)).`,
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, git ${m.git}, zstd ${m.zstd}, ${m.tar}; ` +
      `1-minute load average before each phase: ${Object.entries(m.loadBeforePhase)
        .map(([phase, load]) => `${phase} ${load}`)
        .join(', ')}. Run took ${(r.durationSeconds / 60).toFixed(1)} min.`,
  ].join('\n');
}
