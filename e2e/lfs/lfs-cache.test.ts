import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { lfsEnvironment } from '../../testing/lfs-client.ts';
import { type S3Server, startS3Server } from '../../testing/s3-server.ts';
import { type SidecarProcess, startSidecarProcess } from '../../testing/sidecar-process.ts';
import { type LfsTestServer, startLfsTestServer } from '../support/lfs-server.ts';

const exec = promisify(execFile);
const MIB = 1024 * 1024;
const BUCKET = 'lfs';
const PREFIX = 'fleet';

/**
 * Git LFS through the cache against git-lfs's own test server and MinIO: sidecar processes
 * as `npm start` runs them, the git-lfs client (Debian's) as CI jobs run it.
 */
describe('Git LFS through the cache (lfstest-gitserver, MinIO)', () => {
  let root: string;
  let server: LfsTestServer;
  let s3: S3Server;
  let client: NodeJS.ProcessEnv;
  let files: Record<string, Buffer>;
  const sidecars: SidecarProcess[] = [];
  let a: SidecarProcess;

  const oidOf = (content: Buffer) => createHash('sha256').update(content).digest('hex');
  const git = (args: string[], cwd?: string, env = client) =>
    exec('git', args, { cwd, env, maxBuffer: 1 << 26 }).then((r) => r.stdout);

  async function sidecar(name: string, env: Record<string, string> = {}): Promise<SidecarProcess> {
    const started = await startSidecarProcess({
      GITMIRROR_DATA_DIR: join(root, name),
      GITMIRROR_MIRRORS: `${server.url}/repo.git`,
      GITMIRROR_HTTP_HOSTS: server.host,
      GITMIRROR_SNAPSHOT_STORE: `s3://${BUCKET}/${PREFIX}?forcePathStyle=true`,
      GITMIRROR_ADMIN_TOKEN_FILE: join(root, 'admin-token'),
      GITMIRROR_LOG_LEVEL: 'info',
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      AWS_REGION: s3.region,
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      ...env,
    });
    sidecars.push(started);
    await started.waitUntilOk('/readyz', { timeoutMs: 120_000, intervalMs: 100 });
    const hosts = [server.url, ...sidecars.map((s) => s.gitUrl)];
    await writeFile(
      join(client.HOME!, 'credentials'),
      hosts.map((u) => u.replace('http://', 'http://user:pass@')).join('\n'),
    );
    return started;
  }

  /** A clone through `via` (git from the mirror, LFS content skipped), then `git lfs pull`. */
  async function pullThrough(
    via: SidecarProcess | undefined,
    name: string,
    options: { include?: string; env?: NodeJS.ProcessEnv; gitFromUpstream?: boolean } = {},
  ) {
    const dir = join(root, 'clients', name);
    const cacheUrl = via && `${via.gitUrl}/git/${server.host}/repo.git`;
    const url = cacheUrl && !options.gitFromUpstream ? cacheUrl : `${server.url}/repo.git`;
    const env = options.env ?? client;
    await git(['clone', '--quiet', url, dir], undefined, { ...env, GIT_LFS_SKIP_SMUDGE: '1' });
    // git from upstream, LFS from the cache: a client whose git alone would not get through.
    if (cacheUrl && options.gitFromUpstream)
      await git(['config', 'lfs.url', `${cacheUrl}/info/lfs`], dir, env);
    await git(['config', 'lfs.transfer.maxretries', '1'], dir, env);
    const args = ['lfs', 'pull', ...(options.include ? ['--include', options.include] : [])];
    return { dir, pull: git(args, dir, env).then(() => dir) };
  }

  async function metric(sidecar: SidecarProcess, name: string, labels = ''): Promise<number> {
    const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
    return Number(line?.split(' ').pop() ?? 0);
  }

  async function sameFiles(dir: string, names = Object.keys(files)) {
    for (const name of names)
      assert.ok((await readFile(join(dir, name))).equals(files[name]!), `${name} matches`);
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-lfs-'));
    await writeFile(join(root, 'admin-token'), randomBytes(24).toString('base64url'));
    s3 = await startS3Server();
    await s3.createBucket(BUCKET);
    server = await startLfsTestServer();
    await server.createRepo('repo');
    client = await lfsEnvironment(join(root, 'home'));
    await writeFile(join(client.HOME!, 'credentials'), server.url.replace('http://', 'http://user:pass@'));
    files = {
      'a.bin': randomBytes(3 * MIB),
      'dir/b.bin': randomBytes(512 * 1024),
      'big.bin': randomBytes(96 * MIB),
      // lfstest-gitserver serves this one upper-cased: its sha256 no longer matches.
      'corrupt.bin': Buffer.from('storage-download-corrupt'),
      // ... and this one cut off half way under a full Content-Length.
      'short.bin': Buffer.from('storage-download-retry-range'),
    };
    const work = join(root, 'work');
    await git(['init', '--quiet', '--initial-branch=main', work]);
    await git(['lfs', 'track', '*.bin'], work);
    for (const [name, content] of Object.entries(files)) {
      await mkdir(join(work, name, '..'), { recursive: true });
      await writeFile(join(work, name), content);
    }
    await git(['add', '.'], work);
    await git(['commit', '--quiet', '-m', 'LFS content'], work);
    await git(['push', '--quiet', `${server.url}/repo.git`, 'main'], work);
    a = await sidecar('replica-a');
  });

  after(async () => {
    for (const s of sidecars) await s.stop();
    await server?.stop();
    await s3?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('a clone and git lfs pull through the cache give the same tree as straight from upstream', async () => {
    const good = ['a.bin', 'dir/b.bin'];
    const direct = await pullThrough(undefined, 'direct', { include: good.join(',') });
    await sameFiles(await direct.pull, good);
    const gets = good.map((n) => server.storageGets(oidOf(files[n]!)));
    const cached = await pullThrough(a, 'first', { include: good.join(',') });
    await sameFiles(await cached.pull, good);
    assert.equal(
      await git(['lfs', 'ls-files', '--long'], cached.dir),
      await git(['lfs', 'ls-files', '--long'], direct.dir),
    );
    assert.deepEqual(
      good.map((n) => server.storageGets(oidOf(files[n]!))),
      gets.map((g) => g + 1),
    );
  });

  it('a second clone moves no LFS byte from upstream', async () => {
    const bytes = await metric(a, 'gitmirror_lfs_upstream_bytes_total');
    const gets = server.log().length;
    await sameFiles(await (await pullThrough(a, 'second', { include: 'a.bin,dir/b.bin' })).pull, [
      'a.bin',
      'dir/b.bin',
    ]);
    assert.equal(await metric(a, 'gitmirror_lfs_upstream_bytes_total'), bytes);
    assert.doesNotMatch(server.log().slice(gets), /storage GET/);
  });

  it('ten clients pulling one large object at once: upstream sends it once', async () => {
    const oid = oidOf(files['big.bin']!);
    const clones = await Promise.all(
      Array.from({ length: 10 }, (_, i) => pullThrough(a, `big-${i}`, { include: 'big.bin' })),
    );
    for (const dir of await Promise.all(clones.map((c) => c.pull))) await sameFiles(dir, ['big.bin']);
    assert.equal(server.storageGets(oid), 1);
  });

  for (const name of ['corrupt.bin', 'short.bin']) {
    it(`${name}: the client gets an error, nothing is stored, the next request asks upstream again`, async () => {
      const oid = oidOf(files[name]!);
      const before = server.storageGets(oid);
      await assert.rejects((await pullThrough(a, `${name}-1`, { include: name })).pull);
      const after = server.storageGets(oid);
      assert.ok(after > before);
      await assert.rejects(access(join(root, 'replica-a', 'lfs', 'objects', oid.slice(0, 2), oid)));
      await assert.rejects(
        s3.client.send(
          new HeadObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/lfs/${oid.slice(0, 2)}/${oid}` }),
        ),
      );
      await assert.rejects((await pullThrough(a, `${name}-2`, { include: name })).pull);
      assert.ok(server.storageGets(oid) > after, 'the next request tried upstream again');
    });
  }

  it('a second replica (new data dir, same store) moves no LFS byte from upstream', async () => {
    const b = await sidecar('replica-b');
    const gets = server.log().length;
    await sameFiles(await (await pullThrough(b, 'replica-b', { include: 'a.bin,dir/b.bin,big.bin' })).pull, [
      'a.bin',
      'dir/b.bin',
      'big.bin',
    ]);
    assert.equal(await metric(b, 'gitmirror_lfs_upstream_bytes_total'), 0);
    assert.equal(await metric(b, 'gitmirror_lfs_objects_served_total', 'source="store"'), 3);
    assert.doesNotMatch(server.log().slice(gets), /storage GET/);
  });

  it("Private: a client without access gets upstream's 401/403 and no byte, even of a cached object", async () => {
    await writeFile(join(root, 'cache-credentials'), server.url.replace('http://', 'http://user:pass@'));
    const p = await sidecar('replica-private', {
      GITMIRROR_CREDENTIALS_FILE: join(root, 'cache-credentials'),
    });
    await sameFiles(await (await pullThrough(p, 'private-good', { include: 'a.bin' })).pull, ['a.bin']);
    const served = await metric(p, 'gitmirror_lfs_bytes_served_total', 'source="local"');
    const wrong = await lfsEnvironment(join(root, 'home-wrong'));
    await writeFile(
      join(wrong.HOME!, 'credentials'),
      [server.url, p.gitUrl].map((u) => u.replace('http://', 'http://user:wrong@')).join('\n'),
    );
    const refused = await pullThrough(p, 'private-wrong', { include: 'a.bin', env: wrong });
    await assert.rejects(refused.pull, /403|[Aa]uthoriz/);
    assert.match(await readFile(join(refused.dir, 'a.bin'), 'utf8'), /^version https:\/\/git-lfs/);
    const nobody = await lfsEnvironment(join(root, 'home-nobody'));
    // The Private mirror refuses its git to a client without credentials; it takes git from upstream.
    const anonymous = await pullThrough(p, 'private-anonymous', {
      include: 'a.bin',
      env: nobody,
      gitFromUpstream: true,
    });
    await assert.rejects(anonymous.pull, /401|[Cc]redentials|[Aa]uthoriz/);
    assert.equal(await metric(p, 'gitmirror_lfs_bytes_served_total', 'source="local"'), served);
    assert.ok(
      (await metric(p, 'gitmirror_lfs_batch_requests_total', 'operation="download",outcome="denied"')) >= 2,
    );
  });

  it('git lfs push and git lfs locks through the cache reach upstream', async () => {
    const { dir, pull } = await pullThrough(a, 'pusher', { include: 'dir/b.bin' });
    await pull;
    const pushed = randomBytes(200_000);
    await writeFile(join(dir, 'pushed.bin'), pushed);
    await git(['add', 'pushed.bin'], dir);
    await git(['commit', '--quiet', '-m', 'push through the cache'], dir);
    await git(['push', '--quiet', 'origin', 'main'], dir);
    await git(['lfs', 'lock', 'dir/b.bin'], dir);
    assert.match(await git(['lfs', 'locks'], dir), /dir\/b\.bin/);
    assert.match(server.log(), new RegExp(`storage PUT ${oidOf(pushed)}`));
    const check = await pullThrough(undefined, 'after-push', { include: 'pushed.bin' });
    assert.ok((await readFile(join(await check.pull, 'pushed.bin'))).equals(pushed));
  });

  it('Public: with upstream stopped, a clone and git lfs pull of cached objects still work', async () => {
    await server.stop();
    const dir = await (await pullThrough(a, 'outage', { include: 'a.bin,dir/b.bin,big.bin' })).pull;
    await sameFiles(dir, ['a.bin', 'dir/b.bin', 'big.bin']);
  });
});
