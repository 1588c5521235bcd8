import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorStatus } from '../../../core/admin-api.ts';
import { parseRepoId } from '../../../core/repo-id.ts';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo, objectsOf, refsOf } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';
import { archiveKey, manifestKey } from '../../src/snapshot/layout.ts';
import { SNAPSHOT_FORMAT_V1, type SnapshotManifest } from '../../src/snapshot/manifest.ts';
import { rawTar, sha256, zstd } from '../archive/support/tar-fixtures.ts';

describe('warming a new replica from a snapshot', () => {
  let root: string;
  let upstream: GitUpstream;
  let writer: RunningSidecar;
  let store: string;
  let repoId: string;
  let manifest: SnapshotManifest;
  let upstreamRepo: { bare: string; work: string };

  before(async () => {
    root = await tempDir();
    upstreamRepo = await createUpstreamRepo(join(root, 'upstream', 'org'), 'big', 40);
    upstream = await startGitUpstream(join(root, 'upstream'));
    store = join(root, 'store');
    repoId = `${upstream.host}/org/big`;
    writer = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'writer'),
      GITMIRROR_MIRRORS: upstream.url('org/big.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${store}`,
    });
    await waitFor('writer ready', () => writer.isReady());
    const outcome = await writer.mirrors.snapshot(writer.mirrors.get(repoId)!);
    manifest = outcome.manifest;
  });

  after(async () => {
    await writer.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  async function replica(name: string): Promise<RunningSidecar> {
    return startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, name),
      GITMIRROR_MIRRORS: upstream.url('org/big.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_SNAPSHOT_STORE: `file://${store}`,
    });
  }

  it('restores instead of cloning, catches up, and serves the same refs and objects', async () => {
    const before = upstream.packResponses({ viaCache: false });
    const requestsBefore = upstream.requests.length;
    const b = await replica('replica-ok');
    try {
      await waitFor('replica ready', () => b.isReady());
      const status = b.mirrors.get(repoId)!.status();
      assert.equal(status.restore.source, 'snapshot');
      assert.equal(status.restore.key, manifest.key);
      assert.equal(status.restore.bytesDone, manifest.sizeBytes);
      const mirrorA = writer.mirrors.get(repoId)!.dir;
      const mirrorB = b.mirrors.get(repoId)!.dir;
      assert.equal(await refsOf(mirrorB), await refsOf(mirrorA));
      assert.deepEqual(await objectsOf(mirrorB), await objectsOf(mirrorA));
      await git(['fsck', '--strict'], { cwd: mirrorB });
      const clone = join(root, 'clone-from-b');
      await git(['clone', '--quiet', '--mirror', `${b.gitUrl}/git/${repoId}.git`, clone]);
      assert.equal(await refsOf(clone), await refsOf(mirrorA));
      assert.equal(upstream.packResponses({ viaCache: false }) - before, 0, 'no clone from upstream');
      // Upstream's refs, asked once during the restore, were the snapshot's: no catch-up fetch.
      const listings = upstream.requests.slice(requestsBefore).filter((r) => r.command === 'ls-refs');
      assert.deepEqual(
        listings.map((r) => (r.refPrefixes ? 'git fetch' : 'git ls-remote')),
        ['git ls-remote'],
      );
    } finally {
      await b.shutdown();
    }
  });

  it('catches up with commits pushed after the snapshot before it reports ready', async () => {
    const pushed = await addCommit(upstreamRepo.work, 'after-snapshot.txt', 'new\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: upstreamRepo.work });
    const before = upstream.packResponses({ viaCache: false });
    const b = await replica('replica-behind');
    try {
      await waitFor('replica ready', () => b.isReady());
      const mirror = b.mirrors.get(repoId)!;
      assert.equal(mirror.status().restore.source, 'snapshot');
      assert.equal(mirror.status().restore.key, manifest.key);
      assert.equal(await refsOf(mirror.dir), await refsOf(upstreamRepo.bare));
      assert.equal((await git(['rev-parse', 'refs/heads/main'], { cwd: mirror.dir })).trim(), pushed);
      assert.equal(upstream.packResponses({ viaCache: false }) - before, 1, 'one catch-up fetch');
    } finally {
      await b.shutdown();
    }
  });

  it('serves the latest snapshot as snapshot.tar.zst with ETag and Range', async () => {
    const url = `${writer.gitUrl}/git/${repoId}/snapshot.tar.zst`;
    const full = await fetch(url);
    assert.equal(full.status, 200);
    const bytes = Buffer.from(await full.arrayBuffer());
    assert.equal(bytes.length, manifest.sizeBytes);
    assert.deepEqual(bytes, await readFile(join(store, manifest.key)));
    const etag = full.headers.get('etag')!;
    assert.equal(full.headers.get('x-gitmirror-snapshot-commit'), manifest.commit);
    assert.equal((await fetch(url, { headers: { 'if-none-match': etag } })).status, 304);
    const part = await fetch(url, { headers: { range: 'bytes=10-99' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10-99/${manifest.sizeBytes}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytes.subarray(10, 100));
    assert.equal((await fetch(url, { headers: { range: `bytes=${manifest.sizeBytes}-` } })).status, 416);
    const stale = await fetch(url, { headers: { range: 'bytes=0-9', 'if-range': '"other"' } });
    assert.equal(stale.status, 200, 'If-Range with another ETag gets the whole current archive');
    await stale.arrayBuffer();
  });

  let planted = 0;
  /**
   * Writes a manifest (and optionally an archive) into the store, as a lying writer would:
   * of format 1, whose one sha256 covers the whole archive, so a hand-built tar.zst fits it.
   */
  async function plant(archive: Buffer | undefined, fields: Partial<SnapshotManifest>): Promise<void> {
    const repo = parseRepoId(repoId);
    const key = archiveKey(repo, new Date(Date.now() + 60_000 * ++planted), manifest.commit);
    if (archive) {
      await mkdir(join(store, key, '..'), { recursive: true });
      await writeFile(join(store, key), archive);
    }
    const lying: SnapshotManifest = {
      key,
      commit: manifest.commit,
      createdAt: new Date().toISOString(),
      sizeBytes: archive?.length ?? 1234,
      sha256: archive ? sha256(archive) : 'f'.repeat(64),
      format: SNAPSHOT_FORMAT_V1,
      ...fields,
    };
    await writeFile(join(store, manifestKey(repo)), JSON.stringify(lying));
  }

  const goodArchive = async () => {
    const latest = JSON.parse(
      await readFile(join(store, manifestKey(parseRepoId(repoId))), 'utf8'),
    ) as SnapshotManifest;
    return readFile(join(store, latest.key));
  };

  const badSnapshots: [string, () => Promise<[Buffer | undefined, Partial<SnapshotManifest>]>, RegExp][] = [
    [
      'a truncated archive',
      async () => {
        const a = await goodArchive();
        const t = a.subarray(0, a.length >> 1);
        return [t, {}];
      },
      /SNAPSHOT_CORRUPT/,
    ],
    [
      'a checksum mismatch',
      async () => {
        const a = Buffer.from(await goodArchive());
        a[a.length >> 1]! ^= 0xff;
        return [a, { sha256: sha256(await goodArchive()) }];
      },
      /SNAPSHOT_CORRUPT/,
    ],
    ['a manifest naming a missing key', async () => [undefined, {}], /SNAPSHOT_NOT_FOUND/],
    [
      'hostile tar entries',
      async () => [
        zstd(
          rawTar([
            { path: 'HEAD', body: 'ref: refs/heads/main\n' },
            { path: '../../escaped', body: 'pwned' },
          ]),
        ),
        {},
      ],
      /SNAPSHOT_UNSAFE_ENTRY/,
    ],
    [
      'a symlink out of the archive',
      async () => [zstd(rawTar([{ path: 'objects', type: 'SymbolicLink', linkpath: '/etc' }])), {}],
      /SNAPSHOT_UNSAFE_ENTRY/,
    ],
  ];
  for (const [name, make, reason] of badSnapshots) {
    it(`rejects ${name}, writes nothing outside its temp dir, and falls back to clone`, async () => {
      const honest = await readFile(join(store, manifestKey(parseRepoId(repoId))));
      const [archive, fields] = await make();
      await plant(archive, fields);
      const b = await replica(`replica-${name.replace(/\W+/g, '-')}`);
      try {
        await waitFor('replica ready', () => b.isReady());
        const status: MirrorStatus = b.mirrors.get(repoId)!.status();
        assert.equal(status.restore.source, 'clone');
        assert.match(status.restore.error ?? '', reason);
        assert.equal(await refsOf(b.mirrors.get(repoId)!.dir), await refsOf(upstreamRepo.bare));
        assert.deepEqual(await readdir(join(b.config.dataDir, 'tmp')), [], 'temp dir removed');
        await assert.rejects(readFile(join(b.config.dataDir, 'escaped')));
        await assert.rejects(readFile(join(root, 'escaped')));
      } finally {
        await b.shutdown();
        await writeFile(join(store, manifestKey(parseRepoId(repoId))), honest);
      }
    });
  }
});
