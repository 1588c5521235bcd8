import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { MirrorStatus } from '../../core/admin-api.ts';
import { defaultThreads } from '../../sidecar/src/archive/archive-create.ts';
import type { RunningSidecar } from '../../sidecar/src/server/sidecar.ts';
import type { SnapshotManifest } from '../../sidecar/src/snapshot/manifest.ts';
import { type ArchiveRecord, assertArchiveMatches } from '../../testing/archive-integrity.ts';
import { git } from '../../testing/git.ts';
import { createUpstreamRepo, fsck, makeIncompressibleRepo, refsOf } from '../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../testing/git-upstream.ts';
import { startTestSidecar } from '../../testing/in-process-sidecar.ts';
import { type S3Server, startS3Server } from '../../testing/s3-server.ts';
import { tempDir } from '../../testing/temp-dir.ts';
import { waitFor } from '../../testing/wait.ts';
import { type FaultyProxy, startFaultyProxy } from '../support/faulty-proxy.ts';

/**
 * S3 trouble against the real MinIO, seen through a fault-injecting proxy: the sidecars'
 * store points at the proxy (`AWS_ENDPOINT_URL_S3`), while the assertions read MinIO
 * directly. Whatever S3 does, a cold sidecar becomes ready with correct data (from the
 * snapshot or by clone), a ready one keeps serving, and what is published stays intact.
 */

const BUCKET = 'snapshots';
const PREFIX = 'faults';
/** 5 MiB parts, so the 12 MiB archive of `big` is a 3-part multipart upload. */
const STORE = `s3://${BUCKET}/${PREFIX}?forcePathStyle=true&partSizeMiB=5`;
/** The SDK's attempts per request (S3_DEFAULTS.maxAttempts). */
const SDK_ATTEMPTS = 5;

let server: S3Server;
let proxy: FaultyProxy;
let upstream: GitUpstream;
let root: string;
let svcId: string;
let bigId: string;
const running: RunningSidecar[] = [];
let sidecarCount = 0;

const upstreamDir = (name: string) => join(root, 'upstream', 'org', `${name}.git`);
const manifestKey = (id: string) => `${PREFIX}/${id}/latest.json`;

/** A sidecar on an empty data dir holding `repos` from start, its store behind the proxy. */
async function startSidecar(repos: string[], env: Record<string, string> = {}) {
  const dataDir = join(root, `data-${++sidecarCount}`);
  const sidecar = await startTestSidecar({
    GITMIRROR_DATA_DIR: dataDir,
    GITMIRROR_MIRRORS: repos.map((r) => upstream.url(`org/${r}.git`)).join(','),
    GITMIRROR_HTTP_HOSTS: upstream.host,
    GITMIRROR_SNAPSHOT_STORE: STORE,
    ...env,
  });
  running.push(sidecar);
  return { sidecar, dataDir };
}

async function status(sidecar: RunningSidecar, id: string): Promise<MirrorStatus> {
  const res = await fetch(`${sidecar.adminUrl}/v1/mirrors/${id}`);
  assert.equal(res.status, 200);
  return (await res.json()) as MirrorStatus;
}

/** Reads straight from MinIO, bypassing the proxy. */
async function directGet(key: string): Promise<Buffer | undefined> {
  try {
    const out = await server.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

async function directKeys(id: string): Promise<string[]> {
  const out = await server.client.send(
    new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/${id}/` }),
  );
  return (out.Contents ?? []).map((o) => o.Key!).sort();
}

async function openMultipartUploads(): Promise<number> {
  const out = await server.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
  return out.Uploads?.length ?? 0;
}

async function directManifest(id: string): Promise<SnapshotManifest> {
  const bytes = await directGet(manifestKey(id));
  assert.ok(bytes, `${id} has a manifest`);
  return JSON.parse(bytes.toString()) as SnapshotManifest;
}

/** The archive a record names is in MinIO, whole: every byte as the record vouches for it. */
async function assertArchiveIntact(record: ArchiveRecord) {
  const body = await directGet(`${PREFIX}/${record.key}`);
  assert.ok(body, `${record.key} exists`);
  assertArchiveMatches(body, record);
}

/** A bare clone through the sidecar has exactly upstream's branches and tags. */
async function assertServesUpstream(sidecar: RunningSidecar, repo: string) {
  const clone = join(root, `clone-${++sidecarCount}`);
  await git(['clone', '--quiet', '--bare', `${sidecar.gitUrl}/git/${upstream.host}/org/${repo}.git`, clone]);
  for (const refs of ['refs/heads/', 'refs/tags/'])
    assert.equal(await refsOf(clone, refs), await refsOf(upstreamDir(repo), refs), `${repo} ${refs}`);
  await rm(clone, { recursive: true, force: true });
}

async function assertNothingInTmp(dataDir: string) {
  assert.deepEqual(await readdir(join(dataDir, 'tmp')), [], 'nothing left in tmp/');
}

function restoresMetric(text: string, outcome: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`gitmirror_restores_total{outcome="${outcome}"}`));
  return Number(line?.split(' ')[1] ?? 0);
}

/** A new commit on the repo's main, written straight into the bare upstream. */
async function advanceUpstream(repo: string): Promise<string> {
  const dir = upstreamDir(repo);
  const commit = (
    await git(['commit-tree', 'HEAD^{tree}', '-p', 'HEAD', '-m', `advance ${Date.now()}`], { cwd: dir })
  ).trim();
  await git(['update-ref', 'refs/heads/main', commit], { cwd: dir });
  return commit;
}

before(async () => {
  server = await startS3Server();
  await server.createBucket(BUCKET);
  proxy = await startFaultyProxy(server.endpoint);
  // The store reads credentials, region and endpoint the standard way, from the environment.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: server.region,
    AWS_ENDPOINT_URL_S3: proxy.endpoint,
  });
  root = await tempDir('gitmirror-e2e-faults-');
  await createUpstreamRepo(join(root, 'upstream', 'org'), 'svc', 8);
  await makeIncompressibleRepo(upstreamDir('big'), 24, 512 * 1024);
  upstream = await startGitUpstream(join(root, 'upstream'));
  svcId = `${upstream.host}/org/svc`;
  bigId = `${upstream.host}/org/big`;

  // Publish a snapshot of each repo, through the proxy while it is healthy.
  const { sidecar } = await startSidecar(['svc', 'big']);
  await waitFor('seed sidecar ready', () => sidecar.isReady(), { timeoutMs: 60_000 });
  for (const id of [svcId, bigId]) {
    const res = await fetch(`${sidecar.adminUrl}/v1/mirrors/${id}/snapshot?wait=true`, { method: 'POST' });
    assert.equal(res.status, 200, await res.text());
  }
  await sidecar.shutdown();
  running.length = 0;
  const through = proxy.requests.length;
  assert.ok((await directManifest(bigId)).sizeBytes > 10 * 1024 * 1024, 'big is a multipart archive');
  assert.equal(proxy.requests.length, through, 'direct reads bypass the proxy');
});

afterEach(async () => {
  await proxy.heal();
  for (const sidecar of running.splice(0)) await sidecar.shutdown();
});

after(async () => {
  // Every step runs even if one fails: a MinIO left running would hold the test process open.
  const steps = [
    ...running.splice(0).map((sidecar) => () => sidecar.shutdown()),
    () => proxy?.close(),
    () => upstream?.close(),
    () => server?.stop(),
    () => root && rm(root, { recursive: true, force: true }),
  ];
  let failure: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      failure ??= err;
    }
  }
  if (failure) throw failure;
});

describe('S3 faults against the real MinIO', () => {
  describe('a cold sidecar restoring while S3 fails falls back to clone', () => {
    interface Counters {
      resets: number;
      requests: number;
    }
    const manifestReads = (since: Counters) =>
      proxy.requests.slice(since.requests).filter((r) => /latest\.json/.test(r.url)).length;
    const cases: {
      name: string;
      fail: () => Promise<unknown> | unknown;
      error: RegExp[];
      /** What reached the proxy for the one manifest read: the SDK's attempts. */
      attempts: (since: Counters) => number;
      expectedAttempts: number;
    }[] = [
      {
        name: 'S3 down: connection refused',
        fail: () => proxy.down('refuse'),
        error: [/ECONNREFUSED/],
        attempts: (since) => proxy.requests.length - since.requests,
        expectedAttempts: 0,
      },
      {
        name: 'S3 down: every connection reset',
        fail: () => proxy.down('reset'),
        error: [/ECONNRESET|socket hang up/],
        attempts: (since) => proxy.resetConnections - since.resets,
        expectedAttempts: SDK_ATTEMPTS,
      },
      {
        name: 'every request answered 500 InternalError',
        fail: () => proxy.inject({ kind: 'status', status: 500 }),
        error: [/HTTP 500/, /InternalError/],
        attempts: manifestReads,
        expectedAttempts: SDK_ATTEMPTS,
      },
      {
        name: 'every request answered 503 ServiceUnavailable',
        fail: () => proxy.inject({ kind: 'status', status: 503 }),
        error: [/HTTP 503/, /ServiceUnavailable/],
        attempts: manifestReads,
        expectedAttempts: SDK_ATTEMPTS,
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const since = { resets: proxy.resetConnections, requests: proxy.requests.length };
        await c.fail();
        const { sidecar, dataDir } = await startSidecar(['svc']);
        await waitFor('ready by clone', () => sidecar.isReady(), { timeoutMs: 60_000 });
        const s = await status(sidecar, svcId);
        assert.equal(s.state, 'ready');
        assert.equal(s.restore.source, 'clone');
        assert.match(
          s.restore.error ?? '',
          /^SNAPSHOT_STORE_FAILED: S3 get s3:\/\/snapshots\/faults\/.*latest\.json/,
        );
        for (const pattern of c.error) assert.match(s.restore.error ?? '', pattern);
        assert.ok(!(s.restore.error ?? '').includes(server.secretAccessKey));
        // The SDK retried the manifest read, and within its attempt budget.
        assert.equal(c.attempts(since), c.expectedAttempts, 'attempts of the manifest read');
        const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
        assert.equal(restoresMetric(metrics, 'clone_fallback'), 1);
        await assertNothingInTmp(dataDir);
        await assertServesUpstream(sidecar, 'svc');
      });
    }

    it('503 only on the archive download (GET *.tar.zst): the manifest read works, the download fails', async () => {
      const rule = proxy.inject({ kind: 'status', status: 503 }, { method: 'GET', path: /\.tar\.zst/ });
      const { sidecar, dataDir } = await startSidecar(['svc']);
      await waitFor('ready by clone', () => sidecar.isReady(), { timeoutMs: 60_000 });
      const s = await status(sidecar, svcId);
      const manifest = await directManifest(svcId);
      assert.equal(s.restore.source, 'clone');
      assert.match(s.restore.error ?? '', /^SNAPSHOT_STORE_FAILED: S3 get /);
      assert.ok(s.restore.error?.includes(manifest.key), s.restore.error);
      assert.match(s.restore.error ?? '', /HTTP 503/);
      assert.equal(rule.hits, SDK_ATTEMPTS);
      await assertNothingInTmp(dataDir);
      await assertServesUpstream(sidecar, 'svc');
    });

    it('503 on every other request: the SDK retries absorb it and the restore uses the snapshot', async () => {
      const rule = proxy.inject({ kind: 'status', status: 503 }, { fraction: 0.5 });
      const { sidecar, dataDir } = await startSidecar(['svc']);
      await waitFor('ready from the snapshot', () => sidecar.isReady(), { timeoutMs: 60_000 });
      const s = await status(sidecar, svcId);
      assert.equal(s.restore.source, 'snapshot');
      assert.equal(s.restore.error, undefined);
      assert.equal(s.restore.key, (await directManifest(svcId)).key);
      assert.ok(rule.hits >= 2, `the proxy failed ${rule.hits} requests`);
      await assertNothingInTmp(dataDir);
      await assertServesUpstream(sidecar, 'svc');
    });
  });

  it('slow S3 (latency on every request, 3 MiB/s bodies): still restores from the snapshot, in bounded time', async () => {
    const manifest = await directManifest(bigId);
    const archiveGets = proxy.count({ method: 'GET', path: /\.tar\.zst/ });
    const rule = proxy.inject({ kind: 'latency', ms: 750, bytesPerSecond: 3 * 1024 * 1024 });
    const started = Date.now();
    const { sidecar, dataDir } = await startSidecar(['big']);
    await waitFor('ready from the snapshot', () => sidecar.isReady(), { timeoutMs: 60_000 });
    const elapsed = Date.now() - started;
    const s = await status(sidecar, bigId);
    assert.equal(s.restore.source, 'snapshot', s.restore.error);
    assert.equal(s.restore.key, manifest.key);
    assert.equal(s.restore.bytesDone, manifest.sizeBytes);
    // It really was slow (manifest, HEAD and GET each waited; the bodies trickled, one per
    // restore worker at a time) ...
    const minimum = 3 * 750 + (manifest.sizeBytes / defaultThreads() / (3 * 1024 * 1024)) * 1000;
    assert.ok(elapsed >= minimum * 0.9, `took ${elapsed} ms, expected at least ${minimum} ms`);
    assert.ok(rule.hits >= 3);
    // ... and bounded: no timeout fired, nothing was retried or read twice: the archive's
    // index, then each run of pieces once.
    assert.ok(elapsed < 30_000, `took ${elapsed} ms`);
    const gets = proxy.requests
      .filter((r) => r.method === 'GET' && /\.tar\.zst/.test(r.url))
      .slice(archiveGets);
    assert.ok(gets.length >= 3, `${gets.length} archive reads: the index, then the runs of pieces`);
    // The runs cover the archive up to the index, the index the rest: its size, once.
    assert.equal(
      gets.reduce((sum, r) => sum + r.bytes, 0),
      manifest.sizeBytes,
    );
    await fsck(join(dataDir, 'mirrors', upstream.host, 'org', 'big.git'));
    await assertNothingInTmp(dataDir);
    await assertServesUpstream(sidecar, 'big');
  });

  describe('a broken archive download is resumed, or rejected and cloned instead; never half-installed', () => {
    const cases = [
      {
        name: 'connection reset mid-body, every time it is resumed',
        how: 'reset' as const,
        error:
          /^SNAPSHOT_STORE_FAILED: S3 get s3:\/\/snapshots\/faults\/.*\.tar\.zst broke off after \d+ bytes: (aborted|.*ECONNRESET)/,
      },
      {
        name: 'body ends cleanly but short',
        how: 'end' as const,
        error: /^SNAPSHOT_CORRUPT: .* does not match its manifest: \d+ bytes instead of \d+/,
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const manifest = await directManifest(bigId);
        // Every read of a run of pieces (about 8 MiB) is cut, a resumed one too; the index is shorter.
        const rule = proxy.inject(
          { kind: 'truncate', afterBytes: 1024 * 1024, how: c.how },
          { method: 'GET', path: /\.tar\.zst/ },
        );
        const { sidecar, dataDir } = await startSidecar(['big']);
        const mirrorDir = join(dataDir, 'mirrors', upstream.host, 'org', 'big.git');
        // Watch the data dir during the warm-up: the mirror appears only once, complete.
        const seen = watchMirrorDir(sidecar, bigId, mirrorDir);
        await waitFor('ready by clone', () => sidecar.isReady(), { timeoutMs: 60_000 });
        const phases = await seen.stop();
        const s = await status(sidecar, bigId);
        // The index (at the end, far shorter) comes whole, then the reads of the runs are cut.
        assert.ok(rule.hits >= 2, `${rule.hits} archive reads: the index, then cut ones`);
        assert.equal(s.restore.source, 'clone');
        assert.match(s.restore.error ?? '', c.error);
        assert.ok(s.restore.error?.includes(manifest.key), s.restore.error);
        assert.ok(phases.downloading, 'the restore got as far as downloading');
        // The mirror dir appears only by the clone's rename, never while restoring.
        assert.ok(
          phases.mirrorSeenIn.every((p) => p === 'cloning'),
          `mirror dir seen during ${phases.mirrorSeenIn}`,
        );
        await fsck(mirrorDir);
        await assertNothingInTmp(dataDir);
        await assertServesUpstream(sidecar, 'big');
      });
    }

    it('a connection reset once mid-body: the read resumes at the byte where it broke, the restore uses the snapshot', async () => {
      const manifest = await directManifest(bigId);
      const archiveGets = proxy.count({ method: 'GET', path: /\.tar\.zst/ });
      // The index, then the first read of a run of pieces, cut at 2 MiB; the rule is then spent.
      proxy.inject(
        { kind: 'truncate', afterBytes: 2 * 1024 * 1024, how: 'reset' },
        { method: 'GET', path: /\.tar\.zst/, times: 2 },
      );
      const { sidecar, dataDir } = await startSidecar(['big']);
      await waitFor('ready from the snapshot', () => sidecar.isReady(), { timeoutMs: 60_000 });
      const s = await status(sidecar, bigId);
      assert.equal(s.restore.source, 'snapshot', s.restore.error);
      const gets = proxy.requests
        .filter((r) => r.method === 'GET' && /\.tar\.zst/.test(r.url))
        .slice(archiveGets);
      assert.ok(
        gets.some((r) => r.fault === 'truncate' && r.bytes === 2 * 1024 * 1024),
        'a read was cut at 2 MiB',
      );
      assert.ok(gets.length >= 4, `${gets.length} archive reads: the index, the runs, one resumed`);
      // The resumed read starts where the client's bytes stopped, so the archive went about once.
      const sent = gets.reduce((sum, r) => sum + r.bytes, 0);
      assert.ok(sent >= manifest.sizeBytes, `${sent} bytes sent`);
      assert.ok(sent < manifest.sizeBytes + 2 * 1024 * 1024, `${sent} bytes sent`);
      await fsck(join(dataDir, 'mirrors', upstream.host, 'org', 'big.git'));
      await assertNothingInTmp(dataDir);
    });

    it('one byte flipped in the body: rejected as corrupt', async () => {
      const manifest = await directManifest(svcId);
      const rule = proxy.inject(
        { kind: 'corrupt', atByte: Math.floor(manifest.sizeBytes / 2) },
        { method: 'GET', path: /\.tar\.zst/ },
      );
      const { sidecar, dataDir } = await startSidecar(['svc']);
      await waitFor('ready by clone', () => sidecar.isReady(), { timeoutMs: 60_000 });
      const s = await status(sidecar, svcId);
      assert.ok(rule.hits >= 2, 'the index, then the archive');
      assert.equal(s.restore.source, 'clone');
      assert.match(s.restore.error ?? '', /^SNAPSHOT_CORRUPT: /);
      await assertNothingInTmp(dataDir);
      await assertServesUpstream(sidecar, 'svc');
    });
  });
});

describe('S3 faults while publishing and serving', () => {
  it('a failing periodic snapshot is retried with backoff and published once S3 recovers; the previous one stays intact', async () => {
    const before = await directManifest(bigId);
    const beforeKeys = await directKeys(bigId);
    const latestKey = manifestKey(bigId);
    const beforeBytes = (await directGet(latestKey))!;
    await advanceUpstream('big');
    // Attempt 1: S3 fails every upload of part 2, after part 1 has landed.
    const part2 = proxy.inject(
      { kind: 'status', status: 503 },
      { method: 'PUT', path: /[?&]partNumber=2(&|$)/ },
    );
    const { sidecar } = await startSidecar(['big'], {
      GITMIRROR_SNAPSHOT_INTERVAL: '1h',
      GITMIRROR_SNAPSHOT_RETRY_BASE: '1s',
    });
    await waitFor('writer ready', () => sidecar.isReady(), { timeoutMs: 60_000 });
    const mirror = sidecar.mirrors.get(bigId)!;
    assert.equal(mirror.restore.source, 'snapshot');

    // Record every attempt: when it started and when it was seen to fail or succeed.
    const attempts: { startedAt: number; endedAt?: number; result?: string }[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const job = mirror.snapshot;
        const started = job.lastAttemptAt ? Date.parse(job.lastAttemptAt) : undefined;
        if (started && attempts.at(-1)?.startedAt !== started) attempts.push({ startedAt: started });
        const current = attempts.at(-1);
        if (current && !current.endedAt && !job.running && job.lastResult) {
          current.endedAt = Date.now();
          current.result = job.lastResult;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // Meanwhile, straight from MinIO: the manifest is the old one, byte for byte, and no
    // archive other than the ones it names is visible (parts of an upload never are).
    let phase = 1;
    let checks = 0;
    let monitorError: unknown;
    const monitor = (async () => {
      while (phase < 4) {
        try {
          const [bytes, keys] = await Promise.all([directGet(latestKey), directKeys(bigId)]);
          if (phase >= 4) break;
          assert.ok(bytes?.equals(beforeBytes), 'latest.json unchanged during the outage');
          // In phase 3 a complete, unnamed archive exists for a moment before it is deleted.
          if (phase < 3) assert.deepEqual(keys, beforeKeys, 'no other archive visible');
          checks++;
        } catch (err) {
          monitorError ??= err;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      const failed = () => attempts.filter((a) => a.result === 'failed').length;
      await waitFor('attempt 1 failed', () => failed() >= 1, { timeoutMs: 60_000 });
      assert.match(mirror.snapshot.lastError ?? '', /SNAPSHOT_STORE_FAILED: S3 upload .*HTTP 503/);
      // The part was sent exactly as often as the SDK's attempt budget allows.
      assert.equal(part2.hits, SDK_ATTEMPTS, 'part-2 uploads in attempt 1');
      assert.equal(await openMultipartUploads(), 0, 'the failed upload was aborted');
      assert.deepEqual(await directKeys(bigId), beforeKeys);
      await assertArchiveIntact(before);
      const admin = await status(sidecar, bigId);
      assert.equal(admin.snapshot.lastResult, 'failed');
      assert.equal(admin.ready, true);

      // Attempt 2: S3 fails from part 2 on, the abort of the multipart upload included.
      phase = 2;
      const aborts = proxy.inject({ kind: 'status', status: 503 }, { method: 'DELETE', path: /uploadId=/ });
      await waitFor('attempt 2 failed', () => failed() >= 2, { timeoutMs: 60_000 });
      assert.equal(part2.hits, 2 * SDK_ATTEMPTS, 'part-2 uploads in attempts 1 and 2');
      assert.equal(aborts.hits, 2 * SDK_ATTEMPTS, "lib-storage's abort and the store's own, 5 attempts each");
      assert.equal(await openMultipartUploads(), 1, 'while S3 fails, the upload cannot be aborted');
      await assertArchiveIntact(before);

      // Attempt 3: S3 takes writes again, but writing latest.json fails. The store first
      // aborts the upload attempt 2 left; the complete archive does not outlive the publish.
      phase = 3;
      part2.remove();
      aborts.remove();
      const manifestWrites = proxy.inject(
        { kind: 'status', status: 503 },
        { method: 'PUT', path: /latest\.json/ },
      );
      await waitFor('attempt 3 failed', () => failed() >= 3, { timeoutMs: 60_000 });
      assert.equal(manifestWrites.hits, SDK_ATTEMPTS, 'manifest writes in attempt 3');
      assert.equal(await openMultipartUploads(), 0, 'the leftover upload was aborted');
      assert.deepEqual(await directKeys(bigId), beforeKeys, 'the unnamed archive was deleted');
      assert.ok((await directGet(latestKey))?.equals(beforeBytes));
      await assertArchiveIntact(before);

      // Attempt 4: S3 is healthy; the retry publishes.
      phase = 4;
      manifestWrites.remove();
      await waitFor('published', () => attempts.at(-1)?.result === 'published', { timeoutMs: 60_000 });
    } finally {
      phase = 4;
      watching = false;
      await Promise.all([watcher, monitor]);
    }
    assert.equal(monitorError, undefined, String(monitorError));
    assert.ok(checks >= 5, `the manifest was checked ${checks} times during the outage`);

    // Backoff: the n-th retry waits base × 2^(n-1) after the n-th failure (base 1s).
    assert.equal(attempts.length, 4, JSON.stringify(attempts));
    for (let n = 1; n < attempts.length; n++) {
      const waited = attempts[n]!.startedAt - attempts[n - 1]!.endedAt!;
      const expected = 1000 * 2 ** (n - 1);
      assert.ok(waited >= expected - 150 && waited <= expected + 3000, `retry ${n} after ${waited} ms`);
    }

    // The new snapshot is complete and names the previous one, which is still intact.
    const after = await directManifest(bigId);
    assert.notEqual(after.key, before.key);
    assert.equal(after.commit, (await git(['rev-parse', 'HEAD'], { cwd: upstreamDir('big') })).trim());
    assert.equal(after.previous?.[0]?.key, before.key);
    await assertArchiveIntact(after);
    await assertArchiveIntact(before);
    assert.equal(await openMultipartUploads(), 0);
    // And a cold sidecar restores it.
    const { sidecar: fresh } = await startSidecar(['big']);
    await waitFor('fresh sidecar ready', () => fresh.isReady(), { timeoutMs: 60_000 });
    const freshStatus = await status(fresh, bigId);
    assert.equal(freshStatus.restore.source, 'snapshot');
    assert.equal(freshStatus.restore.key, after.key);
  });

  it('serving is unaffected while S3 is down: clones, fetches and readiness keep working', async () => {
    const { sidecar } = await startSidecar(['svc']);
    await waitFor('ready', () => sidecar.isReady(), { timeoutMs: 60_000 });
    assert.equal((await status(sidecar, svcId)).restore.source, 'snapshot');
    await proxy.down('refuse');

    await assertServesUpstream(sidecar, 'svc');
    // New upstream commits still reach clients.
    const commit = await advanceUpstream('svc');
    const fetched = await fetch(`${sidecar.adminUrl}/v1/mirrors/${svcId}/fetch?wait=true`, {
      method: 'POST',
    });
    assert.equal(fetched.status, 200);
    const url = `${sidecar.gitUrl}/git/${svcId}.git`;
    assert.equal((await git(['ls-remote', url, 'refs/heads/main'])).split('\t')[0], commit);
    await assertServesUpstream(sidecar, 'svc');
    // A snapshot asked for now fails, with the store named, and changes nothing else.
    const snap = await fetch(`${sidecar.adminUrl}/v1/mirrors/${svcId}/snapshot?wait=true`, {
      method: 'POST',
    });
    assert.equal(snap.status, 500);
    assert.match(await snap.text(), /SNAPSHOT_STORE_FAILED/);
    assert.equal((await fetch(`${sidecar.gitUrl}/readyz`)).status, 200);
    const s = await status(sidecar, svcId);
    assert.equal(s.ready, true);
    assert.equal(s.lastFetchError, undefined);
    await assertServesUpstream(sidecar, 'svc');
  });
});

/**
 * Polls a sidecar's mirror during its warm-up: records whether the restore reached the
 * download, and in which restore phases the mirror dir existed on disk.
 */
function watchMirrorDir(sidecar: RunningSidecar, id: string, mirrorDir: string) {
  const phases = { downloading: false, mirrorSeenIn: [] as string[] };
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const mirror = sidecar.mirrors.get(id);
      const phase = mirror?.restore.phase;
      if (phase === 'downloading') phases.downloading = true;
      const exists = await readdir(mirrorDir).then(
        () => true,
        () => false,
      );
      if (exists && phase && phase !== 'done' && !phases.mirrorSeenIn.includes(phase))
        phases.mirrorSeenIn.push(phase);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return phases;
    },
  };
}
