import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { lfsEnvironment } from '../../testing/lfs-client.ts';
import { type LfsTestServer, startLfsTestServer } from '../support/lfs-server.ts';
import {
  BUCKET,
  type Environment,
  NAMESPACE,
  STORE_PREFIX,
  startEnvironment,
} from './support/environment.ts';
import {
  applyGitMirror,
  fleetPods,
  getGitMirror,
  sidecarMetric,
  sidecarMirrors,
} from './support/gitmirror.ts';
import { waitFor } from './support/poll.ts';

const exec = promisify(execFile);
const REPO = 'assets';
const SECRET = 'lfs-upstream';

/**
 * A GitMirror with `lfs.prefetch: Head` on the chart's fleet, its upstream git-lfs's own
 * lfstest-gitserver (exposed on the pod network): after a push with new LFS content, the
 * writer's next periodic fetch brings the new object into MinIO, and a client pulling through
 * another pod gets it without any of its requests reaching upstream.
 */
describe('Git LFS prefetch on a fleet', { timeout: 1_200_000 }, () => {
  let env: Environment;
  let server: LfsTestServer;
  let lfsHost: string;
  let root: string;
  let client: NodeJS.ProcessEnv;
  const git = (args: string[], cwd?: string, extra: NodeJS.ProcessEnv = {}) =>
    exec('git', args, { cwd, env: { ...client, ...extra }, maxBuffer: 1 << 26, timeout: 120_000 }).then(
      (r) => r.stdout,
    );
  const oidOf = (content: Buffer) => createHash('sha256').update(content).digest('hex');
  const inStore = (oid: string) =>
    env.s3.client
      .send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${STORE_PREFIX}/lfs/${oid.slice(0, 2)}/${oid}` }))
      .then(
        () => true,
        () => false,
      );

  async function pushLfs(work: string, name: string, content: Buffer): Promise<void> {
    await writeFile(join(work, name), content);
    await git(['add', name], work);
    await git(['commit', '--quiet', '-m', `add ${name}`], work);
    await git(['push', '--quiet', 'origin', 'main'], work);
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-lfs-fleet-'));
    client = await lfsEnvironment(join(root, 'home'));
    env = await startEnvironment([]);
    server = await startLfsTestServer();
    lfsHost = await server.exposeOn(env.cluster.hostAddress);
    await server.createRepo(REPO);
    await writeFile(join(client.HOME!, 'credentials'), `http://user:pass@${lfsHost}\n`);
    const work = join(root, 'work');
    await git(['clone', '--quiet', `http://${lfsHost}/${REPO}.git`, work]);
    await git(['checkout', '--quiet', '-b', 'main'], work);
    await git(['lfs', 'track', '*.bin'], work);
    await git(['add', '.gitattributes'], work);
    await pushLfs(work, 'first.bin', randomBytes(2 * 1024 * 1024));
    const hosts = [env.upstream.host, lfsHost];
    await env.install({ fleet: { allowedHosts: hosts, httpHosts: hosts } });
    await env.cluster.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: SECRET },
        stringData: { username: 'user', password: 'pass' },
      }),
    });
    await applyGitMirror(env, REPO, `http://${lfsHost}/${REPO}.git`, {
      fetchInterval: '30s',
      credentialsSecretRef: { name: SECRET },
      access: 'Public',
      lfs: { prefetch: 'Head' },
    });
    await env.cluster.kubectl(
      ['wait', '--for=condition=Ready', `gitmirror/${REPO}`, '-n', NAMESPACE, '--timeout=240s'],
      {
        timeoutMs: 250_000,
      },
    );
  });

  after(async () => {
    await server?.stop();
    await env?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('after a push with LFS content, a pod that is not the writer serves the new object without the client touching upstream', async () => {
    const mirrorId = `${lfsHost}/${REPO}`;
    const writer = await waitFor(
      'a snapshot writer',
      async () => (await getGitMirror(env, REPO)).status?.writer,
      {
        timeoutMs: 120_000,
      },
    );
    await waitFor(
      "the writer's first prefetch",
      async () =>
        (await sidecarMirrors(env, writer)).find((m) => m.id === mirrorId)?.lfs?.lastPrefetch?.fetched === 1,
      { timeoutMs: 120_000 },
    );

    const work = join(root, 'work');
    const fresh = randomBytes(3 * 1024 * 1024);
    await pushLfs(work, 'second.bin', fresh);
    const oid = oidOf(fresh);
    // The writer's next periodic fetch (30 s) sees the push and prefetches the new object.
    await waitFor('the new object in the store', () => inStore(oid), { timeoutMs: 180_000 });
    assert.equal(server.storageGets(oid), 1, 'the writer downloaded it once');
    const batches = server.batchRequests(oid);

    const reader = (await fleetPods(env)).find((p) => p.metadata.name !== writer)!;
    const base = await env.cluster.podUrl(NAMESPACE, reader.metadata.name, 8080);
    const dir = join(root, 'client');
    await git(['clone', '--quiet', `${base}/git/${mirrorId}.git`, dir], undefined, {
      GIT_LFS_SKIP_SMUDGE: '1',
    });
    // The client holds no credentials for upstream: anything asked of it would fail.
    await writeFile(join(client.HOME!, 'credentials'), '');
    await git(['lfs', 'pull'], dir);
    assert.ok((await readFile(join(dir, 'second.bin'))).equals(fresh));
    assert.equal(server.storageGets(oid), 1, 'upstream sent the object only to the writer');
    assert.equal(server.batchRequests(oid), batches, 'no batch request for it reached upstream');
    assert.ok(
      (await sidecarMetric(env, reader.metadata.name, 'gitmirror_lfs_objects_served_total', {
        source: 'store',
      })) >= 1,
    );
  });
});
