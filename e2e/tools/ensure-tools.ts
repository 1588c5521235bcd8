import { spawn } from 'node:child_process';
import { access, constants, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Builds the end-to-end suite's external servers from pinned sources, once per machine.
 * Each tool lands in `<cache>/<name>-<version>/bin/<binary>`: built in a temp dir beside it
 * and renamed into place only when complete, so an interrupted build is never mistaken for
 * a good one, and a later run (or CI on the same machine) reuses it without building.
 *
 * To add a tool, add a row to TOOLS; `ensureTools()` returns every tool's binary path and
 * `node e2e/tools/ensure-tools.ts` prints them as `NAME=path` lines.
 */

interface GoTool {
  kind: 'go-install';
  /** Go package to install (the module path, or a package inside it). */
  pkg: string;
  /** Exact module version: a tag or the pseudo-version of a commit. */
  version: string;
  binary: string;
  /** Environment variable run.ts sets to the binary's path for the tests. */
  envVar: string;
  /** `-ldflags` for the build, for values a release build stamps in (part of the pin). */
  ldflags?: string;
}

const HELM_VERSION = 'v3.22.0';

export const TOOLS: Record<string, GoTool> = {
  // MinIO publishes no module tags, so the pin is the pseudo-version of the last commit
  // (README-only changes after 2025-11-06's last code commit). Builds in ~3 min on 2 cores.
  minio: {
    kind: 'go-install',
    pkg: 'github.com/minio/minio',
    version: 'v0.0.0-20260212201848-7aac2a2c5b7c',
    binary: 'minio',
    envVar: 'GITMIRROR_E2E_MINIO',
  },
  // The newest helm v3 (`go list -m -versions helm.sh/helm/v3`). The ldflags are those of helm's
  // Makefile: the version it reports, and the Kubernetes version template and lint assume without
  // a cluster (1 + client-go's minor: v0.37 → 1.37; unset it is 1.20, older than the chart's
  // kubeVersion allows). Builds in ~2.5 min on 2 cores.
  helm: {
    kind: 'go-install',
    pkg: 'helm.sh/helm/v3/cmd/helm',
    version: HELM_VERSION,
    binary: 'helm',
    envVar: 'GITMIRROR_E2E_HELM',
    ldflags: [
      '-s -w',
      `-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}`,
      ...['pkg/lint/rules', 'pkg/chartutil'].flatMap((pkg) => [
        `-X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1`,
        `-X helm.sh/helm/v3/${pkg}.k8sVersionMinor=37`,
      ]),
    ].join(' '),
  },
};

const BUILD_TIMEOUT_MS = 30 * 60 * 1000;
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function toolsCacheDir(): string {
  const dir = resolve(process.env.GITMIRROR_TOOLS_CACHE || join(homedir(), '.cache', 'gitmirror-e2e-tools'));
  const inside = relative(REPO_ROOT, dir);
  if (!inside.startsWith('..') && !inside.startsWith('/'))
    throw new Error(`the tools cache ${dir} must be outside the repository`);
  return dir;
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise();
      else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`})`));
    });
  });
}

async function buildGoTool(name: string, tool: GoTool, target: string): Promise<void> {
  const cache = dirname(target);
  await mkdir(cache, { recursive: true });
  const temp = await mkdtemp(join(cache, `.build-${name}-`));
  try {
    const started = Date.now();
    console.error(`ensure-tools: building ${name} ${tool.version} (go install ${tool.pkg}) ...`);
    const env = {
      ...process.env,
      GOBIN: join(temp, 'bin'),
      CGO_ENABLED: '0',
      GOFLAGS: '-buildvcs=false -trimpath',
    };
    const ldflags = tool.ldflags ? ['-ldflags', tool.ldflags] : [];
    await run('go', ['install', ...ldflags, `${tool.pkg}@${tool.version}`], env, BUILD_TIMEOUT_MS);
    if (!(await isExecutable(join(temp, 'bin', tool.binary))))
      throw new Error(`go install produced no ${tool.binary}`);
    await rename(temp, target).catch(async (err: NodeJS.ErrnoException) => {
      // Another run finished the same build first: theirs is as good as ours.
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
    console.error(`ensure-tools: built ${name} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/** Path of each tool's binary, building what the cache lacks. */
export async function ensureTools(names: string[] = Object.keys(TOOLS)): Promise<Record<string, string>> {
  const cache = toolsCacheDir();
  const paths: Record<string, string> = {};
  for (const name of names) {
    const tool = TOOLS[name];
    if (!tool) throw new Error(`unknown tool ${name}; known: ${Object.keys(TOOLS).join(', ')}`);
    const target = join(cache, `${name}-${tool.version}`);
    const binary = join(target, 'bin', tool.binary);
    if (!(await isExecutable(binary))) await buildGoTool(name, tool, target);
    paths[name] = binary;
  }
  return paths;
}

/** `{ GITMIRROR_E2E_MINIO: '/…/minio' }`, for the test processes. */
export function toolEnv(paths: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(paths).map(([name, path]) => [TOOLS[name]!.envVar, path]));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const env = toolEnv(await ensureTools(process.argv.slice(2).length ? process.argv.slice(2) : undefined));
  for (const [name, path] of Object.entries(env)) console.log(`${name}=${path}`);
}
