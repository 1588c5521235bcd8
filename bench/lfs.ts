import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type LfsTestServer, startLfsTestServer } from '../e2e/support/lfs-server.ts';
import { ensureTools, TOOLS, toolsCacheDir } from '../e2e/tools/ensure-tools.ts';
import { lfsEnvironment } from '../testing/lfs-client.ts';
import type { BenchContext } from './context.ts';
import { type BenchSidecar, spawnSidecar } from './sidecar-process.ts';
import { alternate, median, round, timed } from './util.ts';

const exec = promisify(execFile);
const MIB = 1024 * 1024;

/**
 * lfstest-gitserver, built from the Go module proxy by e2e/tools/ensure-tools.ts:
 *   build  build it if the cache lacks it (about 20 s once per machine)
 *   auto   use it only if it is already built (quick runs)
 *   off    no LFS row
 */
export type LfsMode = 'build' | 'auto' | 'off';

/** The LFS repository: enough objects and bytes (224 MiB) that a pull is dominated by moving them. */
export const LFS_OBJECTS = { default: { count: 56, bytes: 4 * MIB }, quick: { count: 4, bytes: MIB } };

export async function lfsServerBinary(mode: LfsMode): Promise<string | { skipped: string }> {
  if (mode === 'off') return { skipped: 'LFS row disabled (--lfs off)' };
  if (process.env.GITMIRROR_E2E_LFSTEST_GITSERVER) return process.env.GITMIRROR_E2E_LFSTEST_GITSERVER;
  if (mode === 'build') return (await ensureTools(['lfstest-gitserver']))['lfstest-gitserver']!;
  const tool = TOOLS['lfstest-gitserver']!;
  const cached = join(toolsCacheDir(), `lfstest-gitserver-${tool.version}`, 'bin', tool.binary);
  const built = await access(cached, constants.X_OK).then(
    () => true,
    () => false,
  );
  return built
    ? cached
    : { skipped: 'lfstest-gitserver is not built yet (--lfs auto); run with --lfs build' };
}

export interface LfsPullResult {
  objects: number;
  bytes: number;
  /** `git lfs pull` straight from lfstest-gitserver, median seconds. */
  directSeconds: number;
  /** The same pull through a sidecar that holds every object (warm), median seconds. */
  cacheSeconds: number;
  /** LFS bytes the sidecar downloaded from upstream during the timed pulls (0 when warm). */
  upstreamBytesWhileWarm: number;
  samples: { direct: number[]; cache: number[] };
}

/**
 * `git lfs pull` of a repository with 224 MiB of LFS objects, warm through the cache vs
 * straight from git-lfs's own test server (which holds its objects in memory). Each sample
 * is a fresh clone (git only, LFS content skipped) and then the timed `git lfs pull`, which
 * downloads every object, checks it and writes the work tree.
 */
export async function measureLfsPull(
  ctx: BenchContext,
  options: { binary: string; objects: { count: number; bytes: number } },
): Promise<LfsPullResult> {
  process.env.GITMIRROR_E2E_LFSTEST_GITSERVER = options.binary;
  const { objects } = options;
  const server = await startLfsTestServer();
  const dir = join(ctx.workDir, 'lfs');
  let sidecar: BenchSidecar | undefined;
  try {
    const client = await lfsEnvironment(join(dir, 'home'));
    await pushObjects(server, join(dir, 'source'), client, objects);
    sidecar = await spawnSidecar({
      env: {
        GITMIRROR_DATA_DIR: join(dir, 'sidecar'),
        GITMIRROR_MIRRORS: `${server.url}/lfs.git`,
        GITMIRROR_HTTP_HOSTS: server.host,
        GITMIRROR_FETCH_INTERVAL: '24h',
        GITMIRROR_REPACK_INTERVAL: '24h',
      },
      logFile: join(ctx.workDir, 'sidecar-lfs.log'),
      compileCache: ctx.compileCache,
      nodeArgs: ctx.sidecarNodeArgs('lfs'),
    });
    await sidecar.waitReady(ctx.timeoutMs);
    const cacheUrl = `${sidecar.gitUrl}/git/${server.host}/lfs.git`;
    await writeFile(
      join(client.HOME!, 'credentials'),
      [server.url, sidecar.gitUrl].map((u) => u.replace('http://', 'http://user:pass@')).join('\n'),
    );
    ctx.log(`  warming the cache: one pull of ${objects.count} objects through it`);
    await pull(cacheUrl, join(dir, 'warm'), client);
    const upstreamBefore = await upstreamLfsBytes(sidecar);
    let n = 0;
    const sample = (url: string) => async () => {
      const work = join(dir, `pull-${n++}`);
      await exec('git', ['clone', '--quiet', url, work], { env: { ...client, GIT_LFS_SKIP_SMUDGE: '1' } });
      const [, seconds] = await timed(() => exec('git', ['lfs', 'pull'], { cwd: work, env: client }));
      await rm(work, { recursive: true, force: true });
      return seconds;
    };
    const samples = await alternate(
      ctx.runs,
      { direct: sample(`${server.url}/lfs.git`), cache: sample(cacheUrl) },
      ctx.log,
    );
    return {
      objects: objects.count,
      bytes: objects.count * objects.bytes,
      directSeconds: round(median(samples.direct)),
      cacheSeconds: round(median(samples.cache)),
      upstreamBytesWhileWarm: (await upstreamLfsBytes(sidecar)) - upstreamBefore,
      samples,
    };
  } finally {
    await sidecar?.stop();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function pushObjects(
  server: LfsTestServer,
  work: string,
  env: NodeJS.ProcessEnv,
  objects: { count: number; bytes: number },
): Promise<void> {
  await server.createRepo('lfs');
  await writeFile(join(env.HOME!, 'credentials'), server.url.replace('http://', 'http://user:pass@'));
  await exec('git', ['init', '--quiet', '--initial-branch=main', work], { env });
  await exec('git', ['lfs', 'track', '*.bin'], { cwd: work, env });
  for (let i = 0; i < objects.count; i++)
    await writeFile(join(work, `object-${String(i).padStart(3, '0')}.bin`), randomBytes(objects.bytes));
  await exec('git', ['add', '.'], { cwd: work, env });
  await exec('git', ['commit', '--quiet', '-m', 'LFS objects'], { cwd: work, env });
  await exec('git', ['push', '--quiet', `${server.url}/lfs.git`, 'main'], {
    cwd: work,
    env,
    maxBuffer: 1 << 24,
  });
  await rm(work, { recursive: true, force: true });
}

async function pull(url: string, work: string, env: NodeJS.ProcessEnv): Promise<void> {
  await exec('git', ['clone', '--quiet', url, work], { env: { ...env, GIT_LFS_SKIP_SMUDGE: '1' } });
  await exec('git', ['lfs', 'pull'], { cwd: work, env });
  await rm(work, { recursive: true, force: true });
}

async function upstreamLfsBytes(sidecar: BenchSidecar): Promise<number> {
  const text = await sidecar.metrics();
  const line = text.split('\n').find((l) => l.startsWith('gitmirror_lfs_upstream_bytes_total '));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}
