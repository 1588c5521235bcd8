import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { prng } from '../../sidecar/demo/synthetic-repo.ts';
import { git } from '../../testing/git.ts';
import { repoStats } from '../../testing/repo-cache.ts';
import {
  deepMerge,
  type Environment,
  NAMESPACE,
  startEnvironment,
} from '../scenarios/support/environment.ts';
import { adminToken, applyGitMirror, getGitMirror } from '../scenarios/support/gitmirror.ts';
import { FLEET_SERVICE } from '../scenarios/support/observers.ts';
import { waitFor } from '../scenarios/support/poll.ts';
import { Chaos } from './chaos.ts';
import { ReadyEndpoints } from './endpoints.ts';
import { finalChecks } from './final-checks.ts';
import { FleetWatch, fleetWhole } from './fleet-watch.ts';
import { LFS_CREDENTIALS, LFS_REPO, type LfsUpstream, startLfsUpstream } from './lfs.ts';
import { LoadGenerator } from './load.ts';
import { dataDir, ResourceSampler } from './processes.ts';
import { Pusher } from './pusher.ts';
import { newRecord, type RepoInfo, type SoakRecord } from './record.ts';
import { parseRefs } from './ref-history.ts';
import { buildReport, type SoakReport } from './report.ts';
import { copySoakRepos, ensureSoakRepos } from './repos.ts';
import { type Sabotage, sabotageValues } from './sabotage.ts';
import { type ChaosPlan, describePlan, planChaos } from './schedule.ts';
import { fetchUpperBoundMs } from './stats.ts';

/**
 * One soak: a fleet of 3 from the chart on the end-to-end suite's cluster, three GitMirrors
 * of different sizes on an upstream that never stops moving, CI-like load through the
 * Service's ready endpoints, a seeded chaos schedule, the invariants watched throughout and
 * checked after, and the report (JSON and markdown) in `outDir`.
 */

export interface SoakOptions {
  minutes: number;
  seed: number;
  /** Load operations started per minute. */
  rate: number;
  outDir: string;
  sabotage: Sabotage[];
  /** The fleet's data volume (`fleet.dataVolume.size`) [1024]; data dirs are judged by the sidecar's budget, 90% of it. */
  dataBudgetMiB?: number;
  /** A chaos plan of the caller's instead of the seed's (a sabotage test wants only some faults). */
  plan?: ChaosPlan;
  /** Runs with the environment up, after the load stopped and before the final checks. */
  beforeFinalChecks?: (env: Environment) => Promise<void>;
  /** Runs once the fleet is warm, before the load (a test may slow S3 down, say). */
  beforeLoad?: (env: Environment) => Promise<void>;
  log: (line: string) => void;
}

export interface SoakResult {
  record: SoakRecord;
  report: SoakReport;
  jsonPath: string;
  markdownPath: string;
}

const DATA_BUDGET_MIB = 1024;
/** The chart's `fleet.dataVolume.headroomPercent`: the sidecar's budget is the volume less this. */
const DATA_HEADROOM_PERCENT = 10;
const REF_CHECK_INTERVAL_MS = 5000;
const FRESHNESS_WAIT_MS = 30_000;
const MAX_IN_FLIGHT = 8;
const WARM_TIMEOUT_MS = 600_000;
const LFS_SECRET = 'soak-lfs-upstream';

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const { log } = options;
  const startedAt = Date.now();
  const phases: Record<string, number> = {};
  const phase = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await work();
    } finally {
      phases[name] = Date.now() - t0;
    }
  };
  const runMs = options.minutes * 60_000;
  const plan = options.plan ?? planChaos({ seed: options.seed, runMs });
  log(
    `soak: ${options.minutes} min${options.minutes < 60 ? ' (a short run)' : ''}, seed ${options.seed}, ${options.rate} ops/min`,
  );
  log(`chaos schedule (replay with --seed ${options.seed}):\n${describePlan(plan).join('\n')}`);
  const cached = await phase('repositories', () => ensureSoakRepos(log));
  const env = await phase('cluster', () =>
    startEnvironment([], { createRepos: (root) => copySoakRepos(root, cached), faultProxies: true }),
  );
  let lfs: LfsUpstream | undefined;
  try {
    lfs = await phase('LFS upstream', () =>
      startLfsUpstream({
        listenHost: env.cluster.hostAddress,
        dir: join(env.cluster.dir, 'soak-lfs'),
        random: prng(plan.seed ^ 0x5eed),
        intervalMs: { min: 10_000, max: 30_000 },
        log,
      }),
    );
    return await withEnvironment(env, options, { startedAt, phases, phase, plan, cached, lfs });
  } finally {
    await lfs?.stop();
    await env.stop();
  }
}

interface RunContext {
  startedAt: number;
  phases: Record<string, number>;
  phase: <T>(name: string, work: () => Promise<T>) => Promise<T>;
  plan: ChaosPlan;
  cached: Awaited<ReturnType<typeof ensureSoakRepos>>;
  lfs: LfsUpstream;
}

async function withEnvironment(env: Environment, options: SoakOptions, ctx: RunContext): Promise<SoakResult> {
  const { log } = options;
  const { cluster } = env;
  if (!cluster.client || !cluster.kubelet || !env.faults)
    throw new Error('the soak runs on the suite’s own cluster (GITMIRROR_E2E_KUBECONFIG is not supported)');
  const { lfs } = ctx;
  const repos = [...env.repos.keys()];
  const mirrorId = (repo: string) => (repo === LFS_REPO ? `${lfs.host}/${LFS_REPO}` : env.mirrorId(repo));
  const gitUrl = (ip: string, repo: string) => `http://${ip}:8080/git/${mirrorId(repo)}.git`;
  const snapshotsSince = await ctx.phase('install and warm-up', async () => {
    const upstreamHosts = [new URL(env.upstreamUrl(repos[0]!)).host, lfs.host];
    await env.install(
      deepMerge(soakValues(options), { fleet: { allowedHosts: upstreamHosts, httpHosts: upstreamHosts } }),
    );
    await env.cluster.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: LFS_SECRET },
        stringData: LFS_CREDENTIALS,
      }),
    });
    const spec = { fetchInterval: '1m', snapshot: { interval: '5m' } };
    for (const repo of repos) await applyGitMirror(env, repo, env.upstreamUrl(repo), spec);
    await applyGitMirror(env, LFS_REPO, `http://${lfs.host}/${LFS_REPO}.git`, {
      ...spec,
      credentialsSecretRef: { name: LFS_SECRET },
      access: 'Public',
      lfs: { prefetch: 'Head' },
    });
    for (const repo of [...repos, LFS_REPO]) {
      await waitFor(
        `${repo}: Ready with a published snapshot`,
        async () => {
          const status = (await getGitMirror(env, repo)).status;
          const ready = status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
          return ready && status?.latestSnapshot;
        },
        { timeoutMs: WARM_TIMEOUT_MS, intervalMs: 2000 },
      );
    }
    return Date.now();
  });
  const random = prng(ctx.plan.seed);
  const record = emptyRecord(options, ctx, repoInfo(ctx.cached));
  const endpoints = new ReadyEndpoints(cluster.client, NAMESPACE, FLEET_SERVICE);
  endpoints.start();
  const pushers = await Promise.all(
    repos.map((name) =>
      Pusher.create({
        name,
        repo: env.repos.get(name)!,
        random: prng(Math.floor(random() * 2 ** 31)),
        intervalMs: { min: 2000, max: 6000 },
        log,
      }),
    ),
  );
  const histories = new Map([...pushers, lfs.pusher].map((p) => [p.history.repo, p.history]));
  let chaos: Chaos | undefined;
  const fleet = new FleetWatch({
    client: cluster.client,
    endpoints,
    mirrorIds: [...histories.keys()].map(mirrorId),
    adminToken: await adminToken(env),
    killed: () => new Set(record.kills.map((k) => k.pod)),
    s3DownBetween: (from, to) => chaos?.s3DownBetween(from, to) ?? false,
    snapshotsSince,
    checkOnDisk: (pod, id) => checkMirrorOnDisk(env, pod, id, histories),
    violation: (v) => {
      record.live.push(v);
      log(`violation (${v.invariant}): ${v.detail}`);
    },
    log,
  });
  fleet.start();
  await fleet.until('the fleet to be whole', (s) => fleetWhole(s, 3), 120_000);
  const sampler = new ResourceSampler(cluster.kubelet, record);
  sampler.start();
  const fetchBound = watchFetchDurations(fleet);
  await options.beforeLoad?.(env);

  const load = new LoadGenerator({
    rate: options.rate,
    maxInFlight: MAX_IN_FLIGHT,
    random: prng(Math.floor(random() * 2 ** 31)),
    endpoints,
    url: (e, repo) => gitUrl(e.ip, repo),
    histories,
    lfs: { env: lfs.clientEnv, held: lfs.pusher.held },
    workDir: join(cluster.dir, 'soak-clients'),
    ops: record.ops,
    skippedTicks: record.skippedTicks,
  });
  record.meta.loadStart = Date.now();
  for (const p of [...pushers, lfs.pusher]) p.start();
  await load.start();
  chaos = new Chaos({
    env,
    fleet,
    endpoints,
    plan: ctx.plan,
    loadStart: record.meta.loadStart,
    faults: record.faults,
    kills: record.kills,
    log,
  });
  chaos.start();
  await ctx.phase('load', async () => {
    await progress(record, ctx.plan.runMs, log);
    record.meta.loadEnd = Date.now();
    await load.stop();
  });
  await ctx.phase('settle', async () => {
    await chaos.stop();
    for (const p of [...pushers, lfs.pusher]) await p.stop();
    await fleet
      .until('the fleet to be whole', (s) => fleetWhole(s, 3), 600_000)
      .catch((err: Error) => log(err.message));
  });
  await options.beforeFinalChecks?.(env);
  record.final = await ctx.phase('final checks', () =>
    finalChecks({
      env,
      kubelet: cluster.kubelet!,
      fleet,
      histories,
      mirrorId,
      gitUrl,
      lfsHeld: lfs.pusher.held,
      log,
    }),
  );
  await Promise.all([fleet.stop(), sampler.stop(), endpoints.stop(), fetchBound.stop()]);
  record.meta.fetchBoundMs = Math.min(fetchBound.maxMs(), FRESHNESS_WAIT_MS);
  record.meta.lagBoundMs = REF_CHECK_INTERVAL_MS + record.meta.fetchBoundMs;
  record.histories = [...histories.values()].map((h) => h.toJSON());
  record.meta.repos.push(await lfsRepoInfo(lfs));
  record.samples = { fleet: fleet.samples, fleetErrors: fleet.errors };
  record.leaders = fleet.leaders;
  record.meta.finishedAt = Date.now();
  record.meta.loadAverage.end = loadavg().map((l) => Math.round(l * 100) / 100);
  return write(record, options.outDir);
}

/** The chart's defaults, except 3 replicas and a data volume sized for the three repositories. */
function soakValues(options: SoakOptions): Record<string, unknown> {
  return deepMerge(
    {
      // The suite's base values shorten these for its scenarios; the soak runs the chart's.
      operator: { warmupPoll: '5s', logLevel: 'info' },
      fleet: {
        replicas: 3,
        preStopSleepSeconds: 5,
        shutdownTimeoutSeconds: 25,
        dataVolume: { size: `${options.dataBudgetMiB ?? DATA_BUDGET_MIB}Mi` },
      },
    },
    sabotageValues(options.sabotage),
  );
}

async function lfsRepoInfo(lfs: LfsUpstream): Promise<RepoInfo> {
  const stats = await repoStats(join(lfs.server.reposDir, `${LFS_REPO}.git`));
  return {
    name: LFS_REPO,
    size: 'small',
    objects: stats.objects,
    packBytes: stats.packBytes,
    refs: stats.refs,
    lfs: lfs.pusher.totals(),
  };
}

/** A pod's mirror on its data volume: present, and at a state upstream had. */
async function checkMirrorOnDisk(
  env: Environment,
  pod: string,
  mirrorId: string,
  histories: Map<string, import('./ref-history.ts').RefHistory>,
): Promise<string | undefined> {
  const worker = env.cluster.kubelet?.pods().find((w) => w.name === `${NAMESPACE}/${pod}`);
  if (!worker) return undefined; // gone already
  const repo = mirrorId.split('/').pop()!;
  const dir = join(dataDir(worker), 'mirrors', `${mirrorId}.git`);
  let listing: string;
  try {
    listing = await git(['-c', 'safe.directory=*', 'for-each-ref', '--format=%(objectname) %(refname)'], {
      cwd: dir,
    });
    await git(['-c', 'safe.directory=*', 'cat-file', '-e', 'refs/heads/main^{commit}'], { cwd: dir });
  } catch (err) {
    return `${mirrorId} is not on its disk: ${(err as Error).message.slice(0, 200)}`;
  }
  const history = histories.get(repo);
  if (history && history.indexOf(parseRefs(listing)) === undefined) {
    await sleep(3000);
    if (history.indexOf(parseRefs(listing)) === undefined)
      return `${mirrorId} on its disk has refs upstream never had`;
  }
  return undefined;
}

/**
 * The longest fetch any sidecar made, as an upper bound from its histogram
 * (`gitmirror_git_operation_duration_seconds{operation="fetch"}`): the smallest bucket that
 * holds every fetch. Scraped every 30 s, since replaced pods take their counts with them.
 */
function watchFetchDurations(fleet: FleetWatch): { maxMs(): number; stop(): Promise<void> } {
  let max = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      for (const pod of fleet.state.fleet.filter((p) => p.ip)) {
        const text = await fetch(`http://${pod.ip}:9090/metrics`, { signal: AbortSignal.timeout(5000) })
          .then((r) => r.text())
          .catch(() => '');
        max = Math.max(max, fetchUpperBoundMs(text));
      }
      for (let i = 0; i < 60 && !stopped; i++) await sleep(500);
    }
  })();
  return {
    maxMs: () => max,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function progress(record: SoakRecord, runMs: number, log: (line: string) => void): Promise<void> {
  const end = record.meta.loadStart + runMs;
  while (Date.now() < end) {
    await sleep(Math.min(60_000, end - Date.now()));
    const minute = Math.round((Date.now() - record.meta.loadStart) / 60_000);
    const done = record.ops.filter((o) => o.kind !== 'ls-remote' && o.end > 0 && o.end !== o.start);
    log(
      `soak: ${minute} min: ${done.length} operations, ${record.ops.filter((o) => !o.ok && o.end !== o.start).length} failed, ` +
        `${record.skippedTicks.length} ticks skipped, ${record.faults.length} faults, ${record.live.length} live violations, load ${loadavg()[0]!.toFixed(2)}`,
    );
  }
}

function repoInfo(cached: RunContext['cached']): RepoInfo[] {
  return cached.map((c) => ({
    name: c.name,
    size: c.name,
    objects: c.stats.objects,
    packBytes: c.stats.packBytes,
    refs: c.stats.refs,
  }));
}

function emptyRecord(options: SoakOptions, ctx: RunContext, repos: RepoInfo[]): SoakRecord {
  return newRecord(
    {
      minutes: options.minutes,
      short: options.minutes < 60,
      seed: options.seed,
      rate: options.rate,
      loadStart: 0,
      loadEnd: 0,
      startedAt: ctx.startedAt,
      phases: ctx.phases,
      machine: {
        cpus: availableParallelism(),
        cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
        memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
        kernel: release(),
        node: process.version,
        git: execFileSync('git', ['--version'])
          .toString()
          .trim()
          .replace(/^git version /, ''),
      },
      loadAverage: { start: loadavg().map((l) => Math.round(l * 100) / 100) },
      repos,
      lagBoundMs: 0,
      refCheckIntervalMs: REF_CHECK_INTERVAL_MS,
      fetchBoundMs: 0,
      dataBudgetBytes: Math.floor(
        ((options.dataBudgetMiB ?? DATA_BUDGET_MIB) * 2 ** 20 * (100 - DATA_HEADROOM_PERCENT)) / 100,
      ),
      sabotage: options.sabotage,
    },
    ctx.plan,
  );
}

async function write(record: SoakRecord, outDir: string): Promise<SoakResult> {
  const report = buildReport(record);
  await mkdir(outDir, { recursive: true });
  const jsonPath = join(outDir, 'soak.json');
  const markdownPath = join(outDir, 'soak.md');
  await writeFile(
    jsonPath,
    `${JSON.stringify({ record, results: report.results, passed: report.passed, lost: report.lost })}\n`,
  );
  await writeFile(markdownPath, report.markdown);
  return { record, report, jsonPath, markdownPath };
}
