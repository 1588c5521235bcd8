/**
 * The main job on the embedded default: a sidecar with a filesystem snapshot store. It
 * makes a local upstream of a few thousand commits, starts sidecar A, clones through it,
 * publishes a snapshot, starts sidecar B on an empty data dir that restores from that
 * snapshot, checks both serve the same refs, and prints how long each path took.
 *
 *   npm run demo [-- --commits 4000 --keep]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { createLogger } from '../../core/log.ts';
import { startGitUpstream } from '../../testing/git-upstream.ts';
import { loadSidecarConfig } from '../src/config/sidecar-config.ts';
import { type RunningSidecar, startSidecar } from '../src/server/sidecar.ts';
import { openSnapshotService } from '../src/snapshot/snapshot-service-impl.ts';
import { createSyntheticRepo } from './synthetic-repo.ts';

const exec = promisify(execFile);
const { values: args } = parseArgs({
  options: { commits: { type: 'string', default: '4000' }, keep: { type: 'boolean', default: false } },
});
const gitEnv = {
  ...process.env,
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_TERMINAL_PROMPT: '0',
};
const git = (gitArgs: string[], cwd?: string) =>
  exec('git', gitArgs, { cwd, env: gitEnv, maxBuffer: 1 << 28 }).then((r) => r.stdout);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await fn();
  return [value, (performance.now() - start) / 1000];
}

async function waitReady(sidecar: RunningSidecar): Promise<void> {
  while (!sidecar.isReady()) await new Promise((r) => setTimeout(r, 20));
}

async function startNamed(name: string, dataDir: string, upstreamUrl: string, host: string, store: string) {
  const config = loadSidecarConfig({
    GITMIRROR_LISTEN: '127.0.0.1:0',
    GITMIRROR_ADMIN_LISTEN: '127.0.0.1:0',
    GITMIRROR_DATA_DIR: dataDir,
    GITMIRROR_MIRRORS: upstreamUrl,
    GITMIRROR_HTTP_HOSTS: host,
    GITMIRROR_SNAPSHOT_STORE: `file://${store}`,
    GITMIRROR_LOG_LEVEL: 'warn',
  });
  const logger = createLogger({ level: process.env.GITMIRROR_LOG_LEVEL ?? 'warn', name });
  return startSidecar(config, { logger, snapshots: (c) => openSnapshotService(c, logger) });
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'gitmirror-demo-'));
  const commits = Number(args.commits);
  console.log(`gitmirror demo in ${root}`);
  const [, generateSeconds] = await timed(() =>
    createSyntheticRepo(join(root, 'upstream', 'demo', 'app.git'), {
      commits,
      filesPerCommit: 3,
      files: 400,
      fileBytes: 2048,
      refs: 60,
    }),
  );
  const upstream = await startGitUpstream(join(root, 'upstream'));
  const upstreamUrl = upstream.url('demo/app.git');
  const store = join(root, 'snapshots');
  const sidecars: RunningSidecar[] = [];
  try {
    const [, directSeconds] = await timed(() =>
      git(['clone', '--quiet', '--mirror', upstreamUrl, join(root, 'direct.git')]),
    );
    const a = await startNamed('sidecar-a', join(root, 'a'), upstreamUrl, upstream.host, store);
    sidecars.push(a);
    const [, aReadySeconds] = await timed(() => waitReady(a));
    const repoId = `${upstream.host}/demo/app`;
    const [, clientSeconds] = await timed(() =>
      git(['clone', '--quiet', `${a.gitUrl}/git/${repoId}.git`, join(root, 'client')]),
    );
    const [outcome, snapshotSeconds] = await timed(() => a.mirrors.snapshot(a.mirrors.get(repoId)!));
    const b = await startNamed('sidecar-b', join(root, 'b'), upstreamUrl, upstream.host, store);
    sidecars.push(b);
    const [, bReadySeconds] = await timed(() => waitReady(b));
    const source = b.mirrors.get(repoId)!.restore.source;
    const [refsA, refsB] = await Promise.all(
      [a, b].map((s) => git(['ls-remote', `${s.gitUrl}/git/${repoId}.git`])),
    );
    const same = refsA === refsB && refsA!.length > 0;
    const rows: [string, string][] = [
      [
        `generate upstream (${commits} commits, ${refsA!.trim().split('\n').length} refs)`,
        fmt(generateSeconds),
      ],
      ['git clone --mirror straight from upstream', fmt(directSeconds)],
      ['sidecar A: cold start, clone from upstream → ready', fmt(aReadySeconds)],
      ['client clone through sidecar A', fmt(clientSeconds)],
      [
        `sidecar A: publish snapshot (${(outcome.manifest.sizeBytes / 2 ** 20).toFixed(1)} MiB tar.zst)`,
        fmt(snapshotSeconds),
      ],
      [`sidecar B: empty data dir, restore → ready (from ${source})`, fmt(bReadySeconds)],
      ['A and B serve identical refs', same ? 'yes' : 'NO'],
    ];
    printTable(rows);
    console.log(
      `\nrestore-to-ready is ${(aReadySeconds / bReadySeconds).toFixed(1)}x faster than clone-to-ready on this machine.`,
    );
    if (!same || source !== 'snapshot') process.exitCode = 1;
  } finally {
    for (const s of sidecars) await s.shutdown();
    await upstream.close();
    if (!args.keep) await rm(root, { recursive: true, force: true });
  }
}

function fmt(seconds: number): string {
  return `${seconds.toFixed(2)} s`;
}

function printTable(rows: [string, string][]): void {
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n| ${'step'.padEnd(width)} | result |\n|${'-'.repeat(width + 2)}|--------|`);
  for (const [k, v] of rows) console.log(`| ${k.padEnd(width)} | ${v} |`);
}

await main();
