import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { isIgnored, parseDockerignore } from '../../image/context.ts';
import { entryPoints, importClosure, topLevel } from '../../image/imports.ts';

/**
 * What can be checked of the image without a Docker engine: the Dockerfile's promises against
 * the repository (engines, chart, files it copies, dependencies the code imports).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions with continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const [op = '', ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

const all = instructions(read('Dockerfile'));
const stageStarts = all.flatMap((ins, i) => (ins.op === 'FROM' ? [i] : []));
const stages = stageStarts.map((start, n) => all.slice(start, stageStarts[n + 1]));
const runtime = stages.at(-1) ?? [];
const build = stages[0] ?? [];
const argDefaults = new Map(
  all
    .filter((i) => i.op === 'ARG' && i.args.includes('='))
    .map((i) => i.args.split('=', 2) as [string, string]),
);
const packageJson = JSON.parse(read('package.json'));

function baseImage(stage: Instruction[]): string {
  const from = stage[0]!.args.split(/\s+/)[0]!;
  return from.replace(/^\$\{?(\w+)\}?$/, (_, name: string) => argDefaults.get(name) ?? '');
}

function runs(stage: Instruction[]): string {
  return stage
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join('\n');
}

function aptInstalled(stage: Instruction[]): string[] {
  return [...runs(stage).matchAll(/apt-get install ((?:-\S+\s+)*)([^&;]+)/g)].flatMap((m) =>
    m[2]!.trim().split(/\s+/),
  );
}

const ignoreRules = parseDockerignore(read('.dockerignore'));
const ignored = (path: string) => isIgnored(path, ignoreRules);

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

describe('Dockerfile', () => {
  test('multi-stage on the same Node slim base, whose major matches engines', () => {
    assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
    const images = stages.map(baseImage);
    assert.equal(new Set(images).size, 1, `every stage on one base: ${images.join(', ')}`);
    const match = /^node:(\d+)-slim$/.exec(images[0]!);
    assert.ok(match, `a Node slim image, got ${images[0]}`);
    const engines = /^>=\s*(\d+)/.exec(packageJson.engines.node);
    assert.equal(match[1], engines?.[1], 'base image major = package.json engines.node');
  });

  test('the build stage compiles zstd-napi and installs production dependencies only', () => {
    for (const tool of ['python3', 'make', 'g++']) assert.ok(aptInstalled(build).includes(tool), tool);
    assert.match(runs(build), /npm ci --omit=dev/);
    assert.match(runs(build), /require\('zstd-napi'\)/, 'the addon is loaded once, so a broken build fails');
    assert.ok(packageJson.dependencies['zstd-napi']);
  });

  test('the runtime stage installs git and zstd without recommends, and no compiler', () => {
    const installed = aptInstalled(runtime);
    for (const pkg of ['git', 'zstd', 'ca-certificates']) assert.ok(installed.includes(pkg), pkg);
    for (const pkg of ['python3', 'make', 'g++']) assert.ok(!installed.includes(pkg), pkg);
    const installs = [...runs(runtime).matchAll(/apt-get install[^&;]*/g)].map((m) => m[0]);
    assert.ok(installs.length > 0 && installs.every((line) => line.includes('--no-install-recommends')));
    assert.ok(
      runtime.some((i) => i.op === 'COPY' && /--from=build\s+\/app\/node_modules/.test(i.args)),
      'node_modules from the build stage',
    );
  });

  test('runs as the numeric non-root user the chart runs as', () => {
    const users = runtime.filter((i) => i.op === 'USER');
    assert.equal(users.length, 1);
    const [uid, gid] = users[0]!.args.split(':');
    assert.match(uid!, /^\d+$/, 'numeric, so runAsNonRoot can be verified');
    assert.notEqual(Number(uid), 0);
    const values = parse(read('charts/gitmirror/values.yaml'));
    assert.equal(Number(uid), values.securityContext.runAsUser);
    assert.equal(Number(gid), values.securityContext.runAsGroup);
    assert.equal(runtime.at(-1)?.op, 'CMD', 'USER comes before the command');
  });

  test('tini is PID 1, CMD runs the sidecar under it, and WORKDIR is /app', () => {
    // Node as PID 1 would keep every orphan git leaves as a zombie; the chart's args replace CMD only.
    const entrypoints = all.filter((i) => i.op === 'ENTRYPOINT');
    assert.equal(entrypoints.length, 1);
    assert.deepEqual(JSON.parse(entrypoints[0]!.args), ['/usr/bin/tini', '--']);
    assert.ok(aptInstalled(runtime).includes('tini'));
    const cmd = runtime.find((i) => i.op === 'CMD');
    // The same node flags wherever users run the sidecar (tests and the benchmark: testing/sidecar-process.ts).
    const sidecar = JSON.parse(cmd!.args) as string[];
    assert.deepEqual(sidecar, ['node', '--max-semi-space-size=1', 'sidecar/src/main.ts']);
    assert.equal(packageJson.scripts.start, sidecar.join(' '));
    assert.deepEqual(
      parse(read('charts/gitmirror/templates/fleet/deployment.yaml').match(/args: (\[.*\])/)![1]!),
      sidecar,
    );
    assert.match(read('charts/gitmirror/README.md'), new RegExp(`args: \\[${sidecar.join(', ')}\\]`));
    assert.equal(runtime.filter((i) => i.op === 'WORKDIR').at(-1)?.args, '/app');
  });

  test('every command the chart runs exists, is copied into the image and not ignored', () => {
    const templates = ['operator/deployment.yaml', 'fleet/deployment.yaml'].map((t) =>
      read(`charts/gitmirror/templates/${t}`),
    );
    const commands = templates.flatMap((t) =>
      [...t.matchAll(/args: \[node, ([^\]]+)\]/g)].map((m) => m[1]!.split(', ').at(-1)!),
    );
    assert.deepEqual(commands.sort(), ['operator/src/main.ts', 'sidecar/src/main.ts']);
    const copied = runtime.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).map((i) => i.args);
    for (const path of [...commands, 'package.json']) {
      assert.ok(existsSync(join(ROOT, path)), `${path} exists`);
      assert.ok(!ignored(path), `${path} is not in .dockerignore`);
      const top = path.split('/')[0];
      assert.ok(
        copied.some((args) => args.split(/\s+/)[0] === top),
        `${top} is copied into the runtime image`,
      );
    }
    for (const path of ['package-lock.json', '.npmrc'])
      assert.ok(!ignored(path), `${path} reaches the build`);
    assert.ok(ignored('sidecar/test/x.test.ts') && ignored('node_modules/x'), 'the ignore matcher works');
  });

  test('copies every top-level folder whose modules the programs import, and ignores none of them', async () => {
    const closure = await importClosure(ROOT, await entryPoints(ROOT));
    const copied = runtime.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).map((i) => i.args);
    for (const top of topLevel(closure)) {
      assert.ok(
        copied.some((args) => args.split(/\s+/)[0] === top),
        `${top}/ is imported by the programs but not copied into the runtime image`,
      );
    }
    const lost = closure.filter(ignored);
    assert.deepEqual(lost, [], 'imported modules that .dockerignore keeps out of the build');
  });

  test('registry access reaches the build stage only as secret mounts, never a file in a layer', () => {
    const npmCi = build.find((i) => i.op === 'RUN' && i.args.includes('npm ci'));
    assert.match(npmCi!.args, /--mount=type=secret,id=npm-ca/);
    assert.match(npmCi!.args, /--mount=type=secret,id=npmrc/);
    for (const stage of stages) {
      for (const i of stage.filter((x) => x.op === 'COPY' || x.op === 'ADD' || x.op === 'ENV')) {
        assert.doesNotMatch(
          i.args,
          /ca-certificates\.crt|NODE_EXTRA_CA_CERTS|npm_config_userconfig|_authToken/,
        );
      }
    }
    assert.ok(
      !runtime.some((i) => /--mount=type=secret/.test(i.args)),
      'the runtime stage needs no registry',
    );
    assert.ok(
      !runtime.some((i) => i.op === 'COPY' && i.args.includes('.npmrc')),
      '.npmrc stays in the build stage',
    );
  });

  test('compiles every module into a compile cache as the user that runs them', () => {
    const env = runtime.find((i) => i.op === 'ENV' && i.args.startsWith('NODE_COMPILE_CACHE='));
    assert.ok(env, 'NODE_COMPILE_CACHE is set in the runtime image');
    const user = runtime.findIndex((i) => i.op === 'USER');
    const warm = runtime.findIndex((i) => i.op === 'RUN' && i.args === 'node scripts/warm-compile-cache.ts');
    // Node names the cache directory after the uid: filled as root, it would never be read.
    assert.ok(warm > user && user >= 0, 'the cache is filled after USER, as the runtime user');
    assert.ok(
      runtime.some((i) => i.op === 'COPY' && i.args.startsWith('scripts/warm-compile-cache.ts')),
      'the script is copied',
    );
    assert.ok(!ignored('scripts/warm-compile-cache.ts'), 'and not ignored');
  });

  test('production code imports only production dependencies', () => {
    const deps = new Set(Object.keys(packageJson.dependencies));
    const files = [...sourceFiles('sidecar/src'), ...sourceFiles('operator/src')];
    assert.ok(files.length > 20);
    for (const file of files) {
      for (const m of read(file).matchAll(/(?:from\s+|import\s*\(\s*)'([^'.][^']*)'/g)) {
        const spec = m[1]!;
        if (spec.startsWith('node:')) continue;
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        assert.ok(deps.has(pkg), `${file} imports ${pkg}, which is not a production dependency`);
      }
    }
  });
});
