import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BASE_REF } from '../../image/base.ts';
import { imageCacheDir, REPO_ROOT } from '../../image/build.ts';
import { entryPoints, importClosure } from '../../image/imports.ts';
import { SIDECAR_NODE_FLAGS } from '../../testing/sidecar-process.ts';
import { requiredEnv } from '../cluster/cluster.ts';
import { loadImage, type NodeImage } from '../kubelet/image.ts';

/**
 * The image `npm run image` built from the unchanged Dockerfile, run under a real OCI runtime
 * (podman with runc, read-only root, no network) and read from its unpacked layers: what a user
 * who deploys it gets.
 */

const run = promisify(execFile);
/** An npmrc line with a credential (`//registry/:_authToken=...`, `_auth=`, `_password=`). */
const NPMRC_CREDENTIAL = /^\s*(?:\/\/\S+:)?_(?:authToken|auth|password)\s*=/m;
/** A PEM certificate block (not the marker quoted in a library's code or comments). */
const PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]{64,}-----END CERTIFICATE-----/m;
const MB = 1e6;

/** `podman run` with the chart's restrictions: read-only root, no network, the image's own user. */
async function inImage(ref: string, args: string[], env: Record<string, string> = {}) {
  // This machine's runc may not raise rlimits (no CAP_SYS_RESOURCE): ask for lower ones.
  const limits = ['nofile=1024:1024', 'nproc=1024:1024', 'core=0:0'].flatMap((l) => ['--ulimit', l]);
  const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  return run(
    'podman',
    [
      'run',
      '--rm',
      '--runtime',
      'runc',
      '--network',
      'none',
      '--read-only',
      ...limits,
      ...envArgs,
      ref,
      ...args,
    ],
    { timeout: 120_000, maxBuffer: 64 * MB },
  );
}

/** Regular files under `root`, as `/`-rooted paths. */
async function files(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => `/${relative(root, join(e.parentPath, e.name))}`);
}

// Against an existing cluster the image is one built elsewhere (GITMIRROR_E2E_IMAGE).
const skip = process.env.GITMIRROR_E2E_KUBECONFIG ? 'checks the image npm run image builds here' : false;

describe('the image built from the Dockerfile', { timeout: 900_000, skip }, () => {
  let image: NodeImage;
  let base: NodeImage;

  before(async () => {
    const cache = imageCacheDir();
    image = await loadImage(requiredEnv('GITMIRROR_E2E_LOCAL_IMAGE'), cache);
    base = await loadImage(BASE_REF, cache);
  });

  test('runs Node 24, the base image’s NODE_VERSION, under runc with a read-only root', async () => {
    const { stdout } = await inImage(image.ref, ['node', '--version']);
    assert.match(stdout.trim(), /^v24\.\d+\.\d+$/);
    assert.equal(stdout.trim(), `v${image.config.env.NODE_VERSION}`);
    assert.deepEqual(image.config.entrypoint, ['/usr/bin/tini', '--'], 'a PID 1 that reaps orphans');
    assert.deepEqual(image.config.cmd, ['node', ...SIDECAR_NODE_FLAGS, 'sidecar/src/main.ts']);
  });

  test('runs as uid 10001, and the root file system cannot be written', async () => {
    const { stdout } = await inImage(image.ref, [
      'node',
      '-e',
      `console.log(process.getuid(), process.getgid());
       try { require('fs').writeFileSync('/app/x', ''); console.log('written') } catch (e) { console.log(e.code) }`,
    ]);
    assert.deepEqual(stdout.trim().split('\n'), ['10001 10001', 'EROFS']);
  });

  test('loads zstd-napi, compiled in the build stage, and round-trips data through it', async () => {
    const { stdout } = await inImage(image.ref, [
      'node',
      '-e',
      `const z = require('zstd-napi'); const data = Buffer.from('gitmirror '.repeat(1000));
       const packed = z.compress(data); console.log(packed.length < data.length, z.decompress(packed).equals(data));`,
    ]);
    assert.equal(stdout.trim(), 'true true');
  });

  test('uses the compile cache filled at build time, on a read-only root', async () => {
    // Node's own debug output (NODE_DEBUG_NATIVE=COMPILE_CACHE) says, per module, whether the
    // cache had code for it; the sidecar's modules, its entry point included, must come from
    // the cache, not be compiled (a missed .ts file also loads the type stripper for good).
    // The image's command exits at its first check, a bad listen address, after every import.
    const { stderr } = await inImage(image.ref, image.config.cmd, {
      NODE_DEBUG_NATIVE: 'COMPILE_CACHE',
      GITMIRROR_LISTEN: 'not-an-address',
    }).catch((err: { stderr: string }) => err);
    assert.match(
      stderr,
      /retrieving transpile cache for StrippedTypeScript file:\/\/\/app\/sidecar\/src\/main\.ts\.\.\.success/,
    );
    const ours = stderr.split('\n').filter((l) => l.includes('/app/sidecar/src/'));
    const hits = ours.filter((l) => /was accepted/.test(l));
    assert.ok(
      hits.length >= 10,
      `few cache hits for the sidecar's modules:\n${ours.slice(0, 20).join('\n')}`,
    );
    const misses = ours.filter((l) => /no such file|was rejected|not initialized|mismatch/i.test(l));
    assert.deepEqual(misses, [], 'every module of ours was in the cache');
  });

  test('has only production dependencies in node_modules', async () => {
    const lock = JSON.parse(await readFile(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
    };
    const modules = join(image.rootfs, 'app');
    const entries = Object.entries(lock.packages).filter(([path]) => path.startsWith('node_modules/'));
    const dev = entries.filter(([, p]) => p.dev).map(([path]) => path);
    const prod = entries.filter(([, p]) => !p.dev && !p.optional && !p.devOptional).map(([path]) => path);
    assert.ok(
      dev.includes('node_modules/typescript') && existsSync(join(REPO_ROOT, 'node_modules/typescript')),
    );
    assert.deepEqual(
      dev.filter((path) => existsSync(join(modules, path))),
      [],
      'dev dependencies in the image',
    );
    assert.deepEqual(
      prod.filter((path) => !existsSync(join(modules, path))),
      [],
      'production dependencies missing from the image',
    );
  });

  test('holds every module the sidecar and the operator import, as in the checkout', async () => {
    const closure = await importClosure(REPO_ROOT, await entryPoints(REPO_ROOT));
    assert.ok(closure.length > 50, `only ${closure.length} modules`);
    const differing: string[] = [];
    for (const path of closure) {
      const inImageFile = await readFile(join(image.rootfs, 'app', path)).catch(() => undefined);
      if (!inImageFile?.equals(await readFile(join(REPO_ROOT, path)))) differing.push(path);
    }
    assert.deepEqual(differing, [], 'missing from the image or different');
  });

  test('holds no registry credentials or CA bundle from the build: only what Debian packages installed', async (t) => {
    const inBase = new Set(await files(base.rootfs));
    const added = (await files(image.rootfs)).filter((path) => !inBase.has(path));
    const packaged = await debianFiles(image.rootfs);
    const named = added.filter((path) => /(^|\/)\.?npmrc$|\.(crt|pem)$/.test(path) && !packaged.has(path));
    assert.deepEqual(named, [], 'npmrc or certificate files the build added');
    assert.deepEqual(await readdir(join(image.rootfs, 'run/secrets')).catch(() => []), []);
    const imageBundle = join(image.rootfs, 'etc/ssl/certs/ca-certificates.crt');
    const hostOnly = await hostOnlyCertificates(imageBundle);
    // The scanners find what they look for (positive controls).
    assert.match('//registry.npmjs.org/:_authToken=npm_x', NPMRC_CREDENTIAL);
    assert.match(await readFile(imageBundle, 'utf8'), PEM_CERTIFICATE);
    t.diagnostic(`${hostOnly.length} CA certificates this machine trusts and Debian's bundle lacks`);
    const leaks: string[] = [];
    for (const path of added) {
      const content = await readFile(join(image.rootfs, path), 'latin1');
      for (const cert of hostOnly) if (content.includes(cert)) leaks.push(`${path}: this machine's CA`);
      if (packaged.has(path)) continue;
      if (NPMRC_CREDENTIAL.test(content)) leaks.push(`${path}: an npm credential`);
      if (PEM_CERTIFICATE.test(content)) leaks.push(`${path}: a certificate`);
    }
    assert.deepEqual(leaks, []);
  });

  test('is under 200 MB compressed (gzip layers, as a registry stores it)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'gitmirror-image-size-'));
    try {
      await run('skopeo', ['copy', '-q', `containers-storage:${image.ref}`, `oci:${dir}:image`], {
        timeout: 600_000,
      });
      const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
      const blob = (digest: string) => join(dir, 'blobs', ...digest.split(':'));
      const manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), 'utf8'));
      const compressed = (manifest.layers as { size: number }[]).reduce((sum, l) => sum + l.size, 0);
      const unpacked = await treeSize(image.rootfs);
      t.diagnostic(
        `${image.ref}: ${(compressed / MB).toFixed(1)} MB compressed, ${(unpacked / MB).toFixed(1)} MB unpacked, ${manifest.layers.length} layers`,
      );
      assert.ok(compressed < 200 * MB, `${(compressed / MB).toFixed(1)} MB compressed`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Files installed by Debian packages, from dpkg's lists in the image. */
async function debianFiles(rootfs: string): Promise<Set<string>> {
  const info = join(rootfs, 'var/lib/dpkg/info');
  const lists = (await readdir(info)).filter((f) => f.endsWith('.list'));
  const paths = new Set<string>();
  for (const list of lists)
    for (const line of (await readFile(join(info, list), 'utf8')).split('\n')) paths.add(line);
  // ca-certificates generates its bundle and links at install time, outside its file list.
  for (const path of await files(join(rootfs, 'etc/ssl/certs'))) paths.add(`/etc/ssl/certs${path}`);
  return paths;
}

/**
 * Certificates this machine trusts that Debian's bundle (the image's) does not: e.g. a
 * TLS-inspecting proxy's CA, the one thing the build needed from here. Their base64 bodies.
 */
async function hostOnlyCertificates(imageBundle: string): Promise<string[]> {
  const bodies = (pem: string) =>
    [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) =>
      m[1]!.replace(/\s+/g, '').slice(0, 64),
    );
  const image = new Set(bodies(await readFile(imageBundle, 'utf8')));
  const host = bodies(await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8').catch(() => ''));
  // A body is split into 64-character lines in PEM: search for its first line.
  return host.filter((body) => !image.has(body));
}

async function treeSize(root: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}
