import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { type S3Server, startS3Server } from '../../../testing/s3-server.ts';
import { Cleanup } from '../../cluster/cleanup.ts';
import type { E2eCluster } from '../../cluster/cluster.ts';
import { startExistingCluster } from '../../cluster/existing-cluster.ts';
import { REPO_ROOT, startLocalCluster } from '../../cluster/local-cluster.ts';
import { type FaultyProxy, startFaultyProxy } from '../../support/faulty-proxy.ts';

/**
 * Everything a scenario runs against: a cluster (the suite's own, or an existing one when
 * GITMIRROR_E2E_KUBECONFIG is set), an S3 server and a git upstream, both listening where
 * the cluster's pods can reach them, and — once `install()` ran — the chart.
 */

export const NAMESPACE = 'gitmirror-e2e';
export const RELEASE = 'gitmirror';
export const CHART = join(REPO_ROOT, 'charts', 'gitmirror');
export const BUCKET = 'gitmirror-e2e';
export const STORE_PREFIX = 'gitmirror';
const S3_SECRET = 'snapshot-store-credentials';

export interface Environment {
  cluster: E2eCluster;
  s3: S3Server;
  upstream: GitUpstream;
  /** Bare repositories served by the upstream, by name. */
  repos: Map<string, UpstreamRepo>;
  /**
   * With `faultProxies`: what the pods reach instead of the upstream and S3 themselves, so a
   * test can take either down or make it answer errors. Assertions still read MinIO directly.
   */
  faults?: { upstream: FaultyProxy; s3: FaultyProxy };
  upstreamUrl(repo: string): string;
  /** The mirror id (`host/path`) the sidecar and operator use for a repo. */
  mirrorId(repo: string): string;
  install(values?: Record<string, unknown>): Promise<void>;
  upgrade(values: Record<string, unknown>): Promise<void>;
  stop(): Promise<void>;
}

export function startCluster(): Promise<E2eCluster> {
  return process.env.GITMIRROR_E2E_KUBECONFIG ? startExistingCluster() : startLocalCluster();
}

export interface UpstreamRepo {
  bare: string;
  work: string;
}

export interface EnvironmentOptions {
  /** A repository the upstream serves only with these HTTP basic-auth credentials. */
  privateRepo?: { name: string; user: string; password: string };
  /** Makes the upstream's repositories under `root` (default: a small generated one per name). */
  createRepos?: (root: string) => Promise<Map<string, UpstreamRepo>>;
  /** Puts a fault-injecting proxy (support/faulty-proxy.ts) in front of the upstream and of S3. */
  faultProxies?: boolean;
}

export async function startEnvironment(
  repoNames: string[],
  options: EnvironmentOptions = {},
): Promise<Environment> {
  const cluster = await startCluster();
  // The cluster tears itself down on signals; the upstream's repos need the same care.
  const cleanup = new Cleanup();
  cleanup.add('cluster', () => cluster.stop());
  const stopAll = () => cleanup.run().catch((err) => console.error(`e2e: ${(err as Error).message}`));
  try {
    const s3 = await startS3Server({ host: cluster.hostAddress });
    cleanup.add('S3 server', () => s3.stop());
    await s3.createBucket(BUCKET);
    const root = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-upstream-'));
    cleanup.add(
      'upstream repos',
      () => rm(root, { recursive: true, force: true }),
      () => rmSync(root, { recursive: true, force: true }),
    );
    const repos = options.createRepos ? await options.createRepos(root) : new Map<string, UpstreamRepo>();
    for (const name of options.createRepos ? [] : repoNames)
      repos.set(name, await createUpstreamRepo(root, name, 20));
    const { privateRepo } = options;
    const upstream = await startGitUpstream(root, {
      listenHost: cluster.hostAddress,
      ...(privateRepo && {
        basicAuth: {
          user: privateRepo.user,
          password: privateRepo.password,
          paths: [`/${privateRepo.name}.git/`],
        },
      }),
    });
    cleanup.add('git upstream', () => upstream.close());
    const faults = options.faultProxies ? await startFaultProxies(cluster, s3, upstream, cleanup) : undefined;
    // What the pods are told: the proxies' addresses when there are proxies.
    const upstreamHost = faults?.upstream.host ?? upstream.host;
    const s3Endpoint = faults?.s3.endpoint ?? s3.endpoint;
    let values: Record<string, unknown> = {};
    const helmValues = async (extra: Record<string, unknown>) => {
      values = deepMerge(values, extra);
      const file = join(cluster.dir, `values-${Date.now()}.json`);
      const base = baseValues(cluster, { ...s3, endpoint: s3Endpoint }, upstreamHost);
      await writeFile(file, JSON.stringify(deepMerge(base, values)));
      return file;
    };
    return {
      cluster,
      s3,
      upstream,
      repos,
      ...(faults && { faults }),
      upstreamUrl: (repo) => `http://${upstreamHost}/${repo}.git`,
      mirrorId: (repo) => `${upstreamHost}/${repo}`,
      install: async (extra = {}) => {
        await cluster.kubectl(['create', 'namespace', NAMESPACE]);
        // The suite's own cluster goes away as a whole; an existing one must be left as found.
        if (cluster.kind === 'existing') cleanup.add('release', () => uninstall(cluster));
        await cluster.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], { input: JSON.stringify(s3Secret(s3)) });
        const file = await helmValues(extra);
        await cluster.helm([
          'install',
          RELEASE,
          CHART,
          '-n',
          NAMESPACE,
          '-f',
          file,
          '--wait',
          '--timeout',
          '5m',
        ]);
      },
      upgrade: async (extra) => {
        const file = await helmValues(extra);
        await cluster.helm(['upgrade', RELEASE, CHART, '-n', NAMESPACE, '-f', file, '--timeout', '5m']);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function uninstall(cluster: E2eCluster): Promise<void> {
  await cluster.helm(['uninstall', RELEASE, '-n', NAMESPACE, '--wait']).catch(() => undefined);
  await cluster.kubectl(['delete', 'namespace', NAMESPACE, '--wait=true', '--timeout=180s'], {
    timeoutMs: 190_000,
  });
}

function s3Secret(s3: S3Server): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: S3_SECRET },
    stringData: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
  };
}

async function startFaultProxies(
  cluster: E2eCluster,
  s3: S3Server,
  upstream: GitUpstream,
  cleanup: Cleanup,
): Promise<{ upstream: FaultyProxy; s3: FaultyProxy }> {
  const host = cluster.hostAddress;
  const s3Proxy = await startFaultyProxy(s3.endpoint, { host });
  cleanup.add('S3 proxy', () => s3Proxy.close());
  const upstreamProxy = await startFaultyProxy(`http://${upstream.host}`, { host });
  cleanup.add('upstream proxy', () => upstreamProxy.close());
  return { upstream: upstreamProxy, s3: s3Proxy };
}

/** Chart values for the suite: the cluster's image, the S3 server, the upstream allowed over http. */
function baseValues(cluster: E2eCluster, s3: S3Server, upstreamHost: string): Record<string, unknown> {
  return {
    image: cluster.image,
    snapshotStore: {
      bucket: BUCKET,
      prefix: STORE_PREFIX,
      region: s3.region,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: { existingSecret: S3_SECRET },
    },
    operator: { replicas: 2, warmupPoll: '1s', logLevel: 'debug' },
    fleet: {
      replicas: 2,
      allowedHosts: [upstreamHost],
      httpHosts: [upstreamHost],
      // Short, so that scale-downs and rolling updates in the tests do not wait half a minute.
      preStopSleepSeconds: 1,
      shutdownTimeoutSeconds: 5,
    },
  };
}

export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
