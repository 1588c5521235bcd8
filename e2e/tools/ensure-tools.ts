import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
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
  /**
   * go-install: `go install pkg@version`. go-wrapper: `go build pkg` inside the wrapper module
   * e2e/tools/<module>/ (its go.mod and go.sum are committed), for modules whose own go.mod has
   * replace directives and therefore cannot be go-installed (Kubernetes, etcd). go-file:
   * `go build -tags <tags> <file>` inside module `pkg` at `version`, downloaded from the module
   * proxy (its own go.mod and go.sum pin the dependencies), for a `main` that is one file of a
   * directory of mains, which neither `go install` nor `go build pkg` can name (git-lfs's test
   * servers in t/cmd).
   */
  kind: 'go-install' | 'go-wrapper' | 'go-file';
  /** Go package to install (the module path, or a package inside it); go-file: the module path. */
  pkg: string;
  /** go-file: the file inside the module that is the tool's main package. */
  file?: string;
  /** go-file: build tags that file needs (part of the pin). */
  tags?: string;
  /** go-wrapper: the wrapper module's directory under e2e/tools/. */
  module?: string;
  /** Exact module version: a tag or the pseudo-version of a commit. */
  version: string;
  binary: string;
  /** Environment variable run.ts sets to the binary's path for the tests. */
  envVar: string;
  /** `-ldflags` for the build, for values a release build stamps in (part of the pin). */
  ldflags?: string;
}

const HELM_VERSION = 'v3.22.0';
const K8S_VERSION = 'v1.35.4';

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
  // Kubernetes v1.35.4 (e2e/tools/k8s/go.mod maps every staging module to its published v0.35.4
  // twin). One row per binary: the three builds share most packages, so after the first (about
  // 8 min cold on 2 cores) the others take about a minute each. The ldflags stamp the version,
  // which helm's kubeVersion check and `kubectl version` read; unstamped it is v0.0.0-master.
  ...Object.fromEntries(
    ['kube-apiserver', 'kube-controller-manager', 'kubectl'].map((binary) => [
      binary,
      {
        kind: 'go-wrapper',
        module: 'k8s',
        pkg: `k8s.io/kubernetes/cmd/${binary}`,
        version: K8S_VERSION,
        binary,
        envVar: `GITMIRROR_E2E_${binary.toUpperCase().replace(/-/g, '_')}`,
        ldflags: k8sLdflags(K8S_VERSION),
      } satisfies GoTool,
    ]),
  ),
  // git-lfs's own test server (git smart HTTP through git http-backend, plus the LFS batch,
  // basic transfer and locks APIs, with objects whose content makes it misbehave on purpose):
  // the LFS upstream of e2e/lfs/. t/cmd holds one main per file behind the `testtools` tag.
  // Builds in ~20 s.
  'lfstest-gitserver': {
    kind: 'go-file',
    pkg: 'github.com/git-lfs/git-lfs/v3',
    file: 't/cmd/lfstest-gitserver.go',
    tags: 'testtools',
    version: 'v3.8.1',
    binary: 'lfstest-gitserver',
    envVar: 'GITMIRROR_E2E_LFSTEST_GITSERVER',
    ldflags: '-s -w',
  },
  // etcd v3.6.14 through e2e/tools/etcd/go.mod (server/v3's go.mod replaces its sibling modules).
  etcd: {
    kind: 'go-wrapper',
    module: 'etcd',
    pkg: 'go.etcd.io/etcd/server/v3',
    version: 'v3.6.14',
    binary: 'etcd',
    envVar: 'GITMIRROR_E2E_ETCD',
    ldflags: '-s -w',
  },
};

function k8sLdflags(version: string): string {
  const minor = version.split('.')[1];
  const flags = ['-s -w'];
  for (const pkg of ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']) {
    flags.push(`-X ${pkg}.gitVersion=${version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}`);
    flags.push(`-X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z`);
  }
  return flags.join(' ');
}

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

/**
 * Runs a command with a hard timeout; with `capture` its stdout is collected and returned
 * (else inherited), and `capture.acceptExit` may accept a failing exit whose output says why.
 */
function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  options: { cwd?: string; capture?: { acceptExit(stdout: string): boolean } } = {},
): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      env,
      cwd: options.cwd,
      stdio: ['ignore', options.capture ? 'pipe' : 'inherit', 'inherit'],
    });
    let stdout = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 || options.capture?.acceptExit(stdout)) resolvePromise(stdout);
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
    const how = {
      'go-wrapper': `go build in e2e/tools/${tool.module}`,
      'go-file': `go build ${tool.file} in`,
      'go-install': 'go install',
    }[tool.kind];
    console.error(`ensure-tools: building ${name} ${tool.version} (${how} ${tool.pkg}) ...`);
    const env = {
      ...process.env,
      GOBIN: join(temp, 'bin'),
      CGO_ENABLED: '0',
      GOFLAGS: '-buildvcs=false -trimpath',
    };
    const ldflags = tool.ldflags ? ['-ldflags', tool.ldflags] : [];
    // A cold build prints nothing for many minutes; say it is alive.
    const heartbeat = setInterval(() => {
      const minutes = ((Date.now() - started) / 60_000).toFixed(0);
      console.error(`ensure-tools: still building ${name} (${minutes} min)`);
    }, 60_000);
    try {
      if (tool.kind === 'go-wrapper') {
        const cwd = join(REPO_ROOT, 'e2e', 'tools', tool.module!);
        const output = join(temp, 'bin', tool.binary);
        await run(
          'go',
          ['build', ...ldflags, '-o', output, tool.pkg],
          { ...env, GOTOOLCHAIN: 'local' },
          BUILD_TIMEOUT_MS,
          { cwd },
        );
      } else if (tool.kind === 'go-file') {
        const cwd = await moduleSourceDir(tool, env);
        const output = join(temp, 'bin', tool.binary);
        const tags = tool.tags ? ['-tags', tool.tags] : [];
        await run(
          'go',
          ['build', ...tags, ...ldflags, '-o', output, tool.file!],
          { ...env, GOTOOLCHAIN: 'local', GOFLAGS: `${env.GOFLAGS} -mod=readonly` },
          BUILD_TIMEOUT_MS,
          { cwd },
        );
      } else {
        await run('go', ['install', ...ldflags, `${tool.pkg}@${tool.version}`], env, BUILD_TIMEOUT_MS);
      }
    } finally {
      clearInterval(heartbeat);
    }
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

/**
 * go-file: the module's source at the pinned version, from the module proxy into Go's module
 * cache (read-only, checked against the checksum database like any dependency).
 */
async function moduleSourceDir(tool: GoTool, env: NodeJS.ProcessEnv): Promise<string> {
  const stdout = await run(
    'go',
    ['mod', 'download', '-json', `${tool.pkg}@${tool.version}`],
    { ...env, GOTOOLCHAIN: 'local', GOFLAGS: '' },
    BUILD_TIMEOUT_MS,
    // It exits 1 with the reason in the JSON's Error field.
    { capture: { acceptExit: (out) => out.trim().startsWith('{') } },
  );
  const { Dir, Error: error } = JSON.parse(stdout) as { Dir?: string; Error?: string };
  if (!Dir) throw new Error(`go mod download ${tool.pkg}@${tool.version} failed: ${error ?? 'no Dir'}`);
  return Dir;
}

/** Path of each tool's binary, building what the cache lacks. */
export async function ensureTools(names: string[] = Object.keys(TOOLS)): Promise<Record<string, string>> {
  const cache = toolsCacheDir();
  const paths: Record<string, string> = {};
  for (const name of names) {
    const tool = TOOLS[name];
    if (!tool) throw new Error(`unknown tool ${name}; known: ${Object.keys(TOOLS).join(', ')}`);
    const target = join(cache, `${name}-${tool.version}${await wrapperDigest(tool)}`);
    const binary = join(target, 'bin', tool.binary);
    if (!(await isExecutable(binary))) await buildGoTool(name, tool, target);
    paths[name] = binary;
  }
  return paths;
}

/**
 * A wrapper module's go.mod and go.sum decide what gets built as much as the version does, so
 * they are part of the cache key: editing them rebuilds.
 */
async function wrapperDigest(tool: GoTool): Promise<string> {
  if (tool.kind !== 'go-wrapper') return '';
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum'])
    hash.update(await readFile(join(REPO_ROOT, 'e2e', 'tools', tool.module!, file)));
  return `-${hash.digest('hex').slice(0, 12)}`;
}

/** `{ GITMIRROR_E2E_MINIO: '/…/minio' }`, for the test processes. */
export function toolEnv(paths: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(paths).map(([name, path]) => [TOOLS[name]!.envVar, path]));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const env = toolEnv(await ensureTools(process.argv.slice(2).length ? process.argv.slice(2) : undefined));
  for (const [name, path] of Object.entries(env)) console.log(`${name}=${path}`);
}
