import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MirrorList, MirrorStatus, SnapshotRef } from '../../../core/admin-api.ts';
import { git } from '../../../testing/git.ts';
import { headCommit } from '../../../testing/git-repos.ts';
import type { Pod } from '../../kubelet/pod-types.ts';
import { type Environment, NAMESPACE } from './environment.ts';

/**
 * What the scenarios look at, read the way a user would: kubectl for the API, the sidecars'
 * admin API and /metrics over HTTP, and plain `git clone` for the data path.
 */

export const FLEET_SELECTOR = 'gitmirror.dev/cache=default';
export const WARM_GATE = 'gitmirror.dev/warm';

export async function kubectlJson<T>(env: Environment, args: string[]): Promise<T> {
  const { stdout } = await env.cluster.kubectl([...args, '-o', 'json']);
  return JSON.parse(stdout) as T;
}

/** The namespace's pods matching a label selector. */
export async function podsWithLabel(env: Environment, selector: string): Promise<Pod[]> {
  const list = await kubectlJson<{ items: Pod[] }>(env, ['get', 'pods', '-n', NAMESPACE, '-l', selector]);
  return list.items;
}

export function fleetPods(env: Environment): Promise<Pod[]> {
  return podsWithLabel(env, FLEET_SELECTOR);
}

export function operatorPods(env: Environment): Promise<Pod[]> {
  return podsWithLabel(env, OPERATOR_SELECTOR);
}

export async function getPod(env: Environment, name: string): Promise<Pod> {
  return kubectlJson<Pod>(env, ['get', 'pod', name, '-n', NAMESPACE]);
}

export const OPERATOR_SELECTOR = 'app.kubernetes.io/component=operator';
export const OPERATOR_LEASE = 'gitmirror-operator';

/** Who holds the operator's leader Lease (undefined when nobody does). */
export async function leaseHolder(env: Environment): Promise<string | undefined> {
  const lease = await kubectlJson<{ spec: { holderIdentity?: string } }>(env, [
    'get',
    'lease',
    OPERATOR_LEASE,
    '-n',
    NAMESPACE,
  ]);
  return lease.spec.holderIdentity || undefined;
}

/** Fleet pods whose sidecar says it is the snapshot writer of a mirror. */
export async function snapshotWriters(env: Environment, mirrorId: string): Promise<string[]> {
  const writers: string[] = [];
  for (const pod of await fleetPods(env)) {
    const mirror = (await sidecarMirrors(env, pod.metadata.name)).find((m) => m.id === mirrorId);
    if (mirror?.snapshot.writer) writers.push(pod.metadata.name);
  }
  return writers;
}

export function isReady(pod: Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

export function condition(pod: Pod, type: string) {
  return pod.status?.conditions?.find((c) => c.type === type);
}

export interface GitMirrorObject {
  metadata: { name: string; generation?: number; deletionTimestamp?: string };
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    conditions?: {
      type: string;
      status: string;
      reason?: string;
      message?: string;
      observedGeneration?: number;
    }[];
    latestSnapshot?: SnapshotRef;
    replicas?: { total: number; warm: number };
    writer?: string;
    head?: string;
  };
}

export function gitMirrorManifest(name: string, url: string, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'gitmirror.dev/v1alpha1',
    kind: 'GitMirror',
    metadata: { name, namespace: NAMESPACE },
    spec: { url, ...spec },
  };
}

export async function applyGitMirror(
  env: Environment,
  name: string,
  url: string,
  spec: Record<string, unknown> = {},
): Promise<void> {
  await env.cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify(gitMirrorManifest(name, url, spec)),
  });
}

export function getGitMirror(env: Environment, name: string): Promise<GitMirrorObject> {
  return kubectlJson<GitMirrorObject>(env, ['get', 'gitmirror', name, '-n', NAMESPACE]);
}

let cachedToken: string | undefined;

/** The bearer token the operator created for the sidecars' admin API. */
export async function adminToken(env: Environment): Promise<string> {
  if (cachedToken) return cachedToken;
  const secret = await kubectlJson<{ data: { token: string } }>(env, [
    'get',
    'secret',
    'gitmirror-admin-token',
    '-n',
    NAMESPACE,
  ]);
  cachedToken = Buffer.from(secret.data.token, 'base64').toString();
  return cachedToken;
}

export async function sidecarMirrors(env: Environment, pod: string): Promise<MirrorStatus[]> {
  const base = await env.cluster.podUrl(NAMESPACE, pod, 9090);
  const response = await fetch(`${base}/v1/mirrors`, {
    headers: { authorization: `Bearer ${await adminToken(env)}` },
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`GET /v1/mirrors on ${pod}: ${response.status} ${await response.text()}`);
  return ((await response.json()) as MirrorList).mirrors;
}

/** One sample of a Prometheus counter or gauge, summed over the series matching `labels`. */
export async function sidecarMetric(
  env: Environment,
  pod: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const base = await env.cluster.podUrl(NAMESPACE, pod, 9090);
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const series = match[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`))) sum += Number(match[3]);
  }
  return sum;
}

/**
 * `git clone` of a repo through a fleet pod; resolves with the clone's HEAD commit. With the
 * pod's IP (from an EndpointSlice) the local cluster dials it directly, as kube-proxy would.
 * With `credentials`, git answers the cache's 401 the way CI does: from a credential helper
 * that reads the environment, so the password is in no argv.
 */
export async function cloneThrough(
  env: Environment,
  pod: string,
  repo: string,
  ip?: string,
  credentials?: { user: string; password: string },
): Promise<string> {
  const base =
    ip && env.cluster.kind === 'local' ? `http://${ip}:8080` : await env.cluster.podUrl(NAMESPACE, pod, 8080);
  const dir = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-clone-'));
  const helper = credentials && {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'credential.helper',
    GIT_CONFIG_VALUE_0: '!f() { echo "username=$E2E_GIT_USER"; echo "password=$E2E_GIT_PASSWORD"; }; f',
    E2E_GIT_USER: credentials.user,
    E2E_GIT_PASSWORD: credentials.password,
  };
  try {
    await git(['clone', '--quiet', `${base}/git/${env.mirrorId(repo)}.git`, join(dir, 'work')], {
      env: helper,
      timeoutMs: 60_000,
    });
    return await headCommit(join(dir, 'work'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The upstream repo's HEAD commit, straight from its bare repository. */
export async function upstreamHead(env: Environment, repo: string): Promise<string> {
  const bare = env.repos.get(repo)?.bare;
  if (!bare) throw new Error(`no upstream repo ${repo}`);
  return headCommit(bare);
}
