import { parseArgs } from 'node:util';
import type { LfsMode } from './lfs.ts';
import type { RepoParams } from './repo-cache.ts';
import type { S3Mode } from './s3.ts';

export const USAGE = `npm run bench -- [options]

  --size default|small   repository preset (default: ≥ 300 MiB packed, ≥ 400k objects, 1,001 refs)
  --quick                tiny repository, 1 run, S3 only if MinIO is already built (development)
  --commits N --files-per-commit N --files N --file-bytes N --refs N --seed N --noise binary|hex
                         override the preset's repository parameters
  --runs N               samples per figure, each figure is their median (default 5; --quick 1)
  --concurrency N        concurrent clients of the concurrency test (default 16)
  --rounds N             rounds of the concurrency test (default 1)
  --load-clients N       clones streaming while the snapshot's event-loop delay is measured (default 2)
  --s3 build|auto|off    MinIO for the S3 cold start: build it if missing, use it if built, or skip
  --lfs build|auto|off   lfstest-gitserver for the git lfs pull row: build it if missing, use it if built, or skip
  --out FILE             write the results as JSON
  --profile DIR          write a CPU profile (.cpuprofile) of every sidecar process under DIR
  --work-dir DIR         where the run's scratch directory goes (default: the OS temp dir)
  --keep                 keep the scratch directory
  --render FILE          measure nothing: print the table of an earlier --out FILE

The repository is generated once per parameter set and cached in
\${GITMIRROR_BENCH_CACHE:-~/.cache/gitmirror-bench}/<params-hash>/.`;

export const PRESETS: Record<'default' | 'small' | 'quick', RepoParams> = {
  // 42,000 commits × (1 commit + 1 root tree + ~4 dir trees + 4 blobs) ≈ 412k objects; each
  // blob carries 2 KiB of incompressible bytes, so the pack is ≈ 376 MiB.
  default: {
    commits: 42_000,
    filesPerCommit: 4,
    files: 4000,
    fileBytes: 4096,
    refs: 1000,
    noise: 'binary',
    seed: 42,
  },
  small: {
    commits: 4200,
    filesPerCommit: 4,
    files: 1000,
    fileBytes: 4096,
    refs: 200,
    noise: 'binary',
    seed: 42,
  },
  quick: {
    commits: 400,
    filesPerCommit: 3,
    files: 100,
    fileBytes: 2048,
    refs: 20,
    noise: 'binary',
    seed: 42,
  },
};

export interface BenchOptions {
  mode: string;
  params: RepoParams;
  runs: number;
  concurrency: number;
  rounds: number;
  loadClients: number;
  s3: S3Mode;
  lfs: LfsMode;
  out?: string;
  profileDir?: string;
  workDir?: string;
  keep: boolean;
}

function positive(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not "${value}"`);
  return n;
}

function oneOf<T extends string>(
  value: string | undefined,
  allowed: readonly T[],
  name: string,
): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new Error(`--${name} must be one of ${allowed.join(', ')}`);
  return value as T;
}

export function parseBenchArgs(argv: string[]): BenchOptions | 'help' | { render: string } {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      size: { type: 'string' },
      quick: { type: 'boolean', default: false },
      commits: { type: 'string' },
      'files-per-commit': { type: 'string' },
      files: { type: 'string' },
      'file-bytes': { type: 'string' },
      refs: { type: 'string' },
      seed: { type: 'string' },
      noise: { type: 'string' },
      runs: { type: 'string' },
      concurrency: { type: 'string' },
      rounds: { type: 'string' },
      'load-clients': { type: 'string' },
      s3: { type: 'string' },
      lfs: { type: 'string' },
      out: { type: 'string' },
      profile: { type: 'string' },
      'work-dir': { type: 'string' },
      keep: { type: 'boolean', default: false },
      render: { type: 'string' },
    },
  });
  if (v.help) return 'help';
  if (v.render) return { render: v.render };
  const size = oneOf(v.size, ['default', 'small'] as const, 'size');
  if (size && v.quick) throw new Error('--quick and --size exclude each other');
  const preset = v.quick ? 'quick' : (size ?? 'default');
  const overrides: Partial<RepoParams> = {
    commits: positive(v.commits, 'commits'),
    filesPerCommit: positive(v['files-per-commit'], 'files-per-commit'),
    files: positive(v.files, 'files'),
    fileBytes: positive(v['file-bytes'], 'file-bytes'),
    refs: positive(v.refs, 'refs'),
    seed: positive(v.seed, 'seed'),
    noise: oneOf(v.noise, ['binary', 'hex'] as const, 'noise'),
  };
  const custom = Object.values(overrides).some((value) => value !== undefined);
  const params = { ...PRESETS[preset] };
  for (const [key, value] of Object.entries(overrides))
    if (value !== undefined) Object.assign(params, { [key]: value });
  return {
    mode: custom ? `${preset}+custom` : preset,
    params,
    runs: positive(v.runs, 'runs') ?? (v.quick ? 1 : 5),
    concurrency: positive(v.concurrency, 'concurrency') ?? 16,
    rounds: positive(v.rounds, 'rounds') ?? 1,
    loadClients: positive(v['load-clients'], 'load-clients') ?? 2,
    s3: oneOf(v.s3, ['build', 'auto', 'off'] as const, 's3') ?? (v.quick ? 'auto' : 'build'),
    lfs: oneOf(v.lfs, ['build', 'auto', 'off'] as const, 'lfs') ?? (v.quick ? 'auto' : 'build'),
    out: v.out,
    profileDir: v.profile,
    workDir: v['work-dir'],
    keep: v.keep ?? false,
  };
}
