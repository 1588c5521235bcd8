import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { type ArchiveRecord, assertArchiveMatches } from '../../testing/archive-integrity.ts';
import { git } from '../../testing/git.ts';
import type { TestKubelet } from '../kubelet/kubelet.ts';
import { BUCKET, type Environment, STORE_PREFIX } from '../scenarios/support/environment.ts';
import type { FleetWatch } from './fleet-watch.ts';
import { containers, dataDir, otherProcesses } from './processes.ts';
import type { FinalChecks } from './record.ts';
import { digest, parseRefs, type RefHistory } from './ref-history.ts';

/**
 * After the load, the pushers and the chaos have stopped and the fleet is whole: what must
 * hold of what is left. Mirrors get the fetch interval (plus slack) to catch up with
 * upstream's last push, as a user would give them.
 */

/** The mirrors' fetch interval (1m) and the freshness wait, with room. */
const CATCH_UP_MS = 90_000;
const IDLE_MS = 120_000;

export interface FinalCheckOptions {
  env: Environment;
  kubelet: TestKubelet;
  fleet: FleetWatch;
  histories: Map<string, RefHistory>;
  /** The mirror id (`host/path`) of a repository: its path in the data dir and the store. */
  mirrorId: (repo: string) => string;
  gitUrl: (ip: string, repo: string) => string;
  /** The LFS objects upstream holds, oid → size. */
  lfsHeld: ReadonlyMap<string, number>;
  log: (line: string) => void;
}

export async function finalChecks(options: FinalCheckOptions): Promise<FinalChecks> {
  const mirrorsEqualUpstream = await checkMirrors(options);
  const snapshotsWhole = await checkSnapshots(options);
  await waitIdle(options);
  const leftovers = await checkLeftovers(options);
  const multipartUploads = await checkMultipart(options.env);
  const orphanedProcesses = await checkOrphans(options.kubelet);
  return {
    mirrorsEqualUpstream,
    snapshotsWhole,
    leftovers,
    multipartUploads,
    orphanedProcesses,
    checkedAt: Date.now(),
  };
}

/**
 * Through each pod (`ls-remote`, as a client sees it, which also makes a stale mirror check
 * upstream) until every mirror serves upstream's refs or the catch-up time is over; then on
 * each pod's disk: the same refs, and every object they reach present.
 */
async function checkMirrors(options: FinalCheckOptions): Promise<string[]> {
  const pods = options.fleet.state.fleet.filter((p) => p.ready && p.ip);
  const pairs = pods.flatMap((pod) => [...options.histories.keys()].map((repo) => ({ pod, repo })));
  const want = new Map([...options.histories].map(([repo, h]) => [repo, digest(h.refs())]));
  const serving = new Map<string, string>();
  const deadline = Date.now() + CATCH_UP_MS;
  for (;;) {
    await Promise.all(
      pairs.map(async ({ pod, repo }) => {
        const key = `${repo} via ${pod.name}`;
        if (serving.get(key) === 'same') return;
        const refs = await git(['ls-remote', options.gitUrl(pod.ip!, repo)], { timeoutMs: 60_000 })
          .then(parseRefs)
          .catch((err: Error) => err);
        serving.set(
          key,
          refs instanceof Error
            ? refs.message
            : digest(refs) === want.get(repo)
              ? 'same'
              : 'refs differ from upstream',
        );
      }),
    );
    if ([...serving.values()].every((v) => v === 'same') || Date.now() > deadline) break;
    await sleep(5000);
  }
  const problems = [...serving]
    .filter(([, v]) => v !== 'same')
    .map(([key, v]) => `${key}: ${v.slice(0, 300)}`);
  for (const { pod, repo } of pairs) {
    const worker = options.kubelet.pods().find((w) => w.name.endsWith(`/${pod.name}`));
    if (!worker) continue;
    const dir = join(dataDir(worker), 'mirrors', `${options.mirrorId(repo)}.git`);
    const safe = ['-c', 'safe.directory=*'];
    const onDisk = await git([...safe, 'for-each-ref', '--format=%(objectname) %(refname)'], { cwd: dir })
      .then((out) => (digest(parseRefs(out)) === want.get(repo) ? undefined : 'refs differ from upstream'))
      .catch((err: Error) => err.message);
    if (onDisk) problems.push(`${repo} on ${pod.name}'s disk: ${onDisk.slice(0, 300)}`);
    const fsck = await git([...safe, 'fsck', '--connectivity-only', '--no-dangling'], {
      cwd: dir,
      timeoutMs: 300_000,
    }).then(
      () => undefined,
      (err: Error) => err.message,
    );
    if (fsck) problems.push(`${repo} on ${pod.name}'s disk: fsck: ${fsck.slice(0, 300)}`);
  }
  return problems;
}

/**
 * Each mirror's latest.json, read from MinIO itself, names a whole archive: of its size and,
 * as a restore checks it, its sha256 (format 1) or its index's sha256 and every piece's
 * (format 2). Every LFS object in the store is one upstream holds, of its size, and hashes
 * to its key.
 */
async function checkSnapshots(options: FinalCheckOptions): Promise<string[]> {
  const problems: string[] = [];
  for (const repo of options.histories.keys()) {
    const prefix = `${STORE_PREFIX}/${options.mirrorId(repo)}/`;
    try {
      const manifest = JSON.parse(
        await readObject(options.env, `${prefix}latest.json`).then(String),
      ) as ArchiveRecord;
      const archive = await readObject(options.env, `${STORE_PREFIX}/${manifest.key}`);
      try {
        assertArchiveMatches(archive, manifest);
      } catch (err) {
        problems.push(
          `${repo}: ${manifest.key} is ${archive.length} bytes, latest.json says ${manifest.sizeBytes}; it fails the restore's check (${(err as Error).message.split('\n')[0]})`,
        );
      }
    } catch (err) {
      problems.push(`${repo}: ${(err as Error).message}`);
    }
  }
  return [...problems, ...(await checkLfsStore(options))];
}

async function checkLfsStore(options: FinalCheckOptions): Promise<string[]> {
  const problems: string[] = [];
  const prefix = `${STORE_PREFIX}/lfs/`;
  let token: string | undefined;
  do {
    const page = await options.env.s3.client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }),
    );
    for (const { Key: key } of page.Contents ?? []) {
      const oid = key!.split('/').pop()!;
      const { size, sha256 } = await hashObject(options.env, key!);
      if (sha256 !== oid || options.lfsHeld.get(oid) !== size)
        problems.push(
          `LFS ${key} is ${size} bytes, sha256 ${sha256}; upstream holds ${options.lfsHeld.get(oid) ?? 'no such object'}`,
        );
    }
    token = page.NextContinuationToken;
  } while (token);
  return problems;
}

async function hashObject(env: Environment, key: string): Promise<{ size: number; sha256: string }> {
  const body = await env.s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of body.Body as Readable) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

async function readObject(env: Environment, key: string): Promise<Buffer> {
  const object = await env.s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await object.Body!.transformToByteArray());
}

/** No sidecar is running a job: what is left in a container or a data dir then is left over. */
async function waitIdle(options: FinalCheckOptions): Promise<void> {
  await options.fleet
    .until(
      'the fleet to be idle',
      (s) =>
        [...s.mirrors.values()].every((list) =>
          list.every((m) => !m.snapshot.running && m.state === 'ready'),
        ),
      IDLE_MS,
    )
    .catch((err: Error) => options.log(`final checks: ${err.message}`));
}

/** Temp dirs, spool files, LFS downloads never finished and git's lock and temp files in every fleet pod's data dir. */
async function checkLeftovers(options: FinalCheckOptions): Promise<string[]> {
  const problems: string[] = [];
  for (const c of containers(options.kubelet).filter((x) => x.role === 'sidecar')) {
    const root = dataDir(c.worker);
    for (const sub of ['tmp', 'spool', 'lfs/tmp']) {
      const entries = await readdir(join(root, sub)).catch(() => [] as string[]);
      for (const e of entries) problems.push(`${c.pod}: ${sub}/${e}`);
    }
    for (const file of await walk(join(root, 'mirrors'))) {
      const name = file.split('/').pop()!;
      if (name.endsWith('.lock') || name.startsWith('tmp_') || name.startsWith('.tmp-'))
        problems.push(`${c.pod}: ${file.slice(root.length + 1)}`);
    }
  }
  return problems;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else out.push(path);
  }
  return out;
}

async function checkMultipart(env: Environment): Promise<string[]> {
  const listed = await env.s3.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
  return (listed.Uploads ?? []).map(
    (u) => `multipart upload of ${u.Key} begun ${u.Initiated?.toISOString()} never finished`,
  );
}

/**
 * Processes in a fleet or operator container besides its main one, once the fleet is idle:
 * those there in two looks 15 s apart (a periodic fetch may be starting in either).
 */
async function checkOrphans(kubelet: TestKubelet): Promise<string[]> {
  const look = () => containers(kubelet).flatMap((c) => otherProcesses(c).map((p) => `${c.pod}: ${p}`));
  const first = new Set(look());
  await sleep(15_000);
  return look().filter((p) => first.has(p));
}
