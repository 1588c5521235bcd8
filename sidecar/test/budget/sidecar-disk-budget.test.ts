import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MirrorList } from '../../../core/admin-api.ts';
import { git } from '../../../testing/git.ts';
import { makeIncompressibleRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { configureMirror, startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import {
  mountSmallFilesystem,
  type SmallFilesystem,
  smallFilesystemSkipReason,
} from '../../../testing/small-filesystem.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import { filesystemFreeBytes } from '../../src/budget/tree-usage.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

const MiB = 1024 * 1024;

describe('GITMIRROR_DATA_BUDGET, a sidecar on a real small filesystem', {
  skip: await smallFilesystemSkipReason(),
}, () => {
  let root: string;
  let upstream: GitUpstream;
  const mounts: SmallFilesystem[] = [];
  const sidecars: RunningSidecar[] = [];

  before(async () => {
    root = await tempDir();
    const repos = join(root, 'upstream', 'org');
    await makeIncompressibleRepo(join(repos, 'big.git'), 12, MiB);
    for (const name of ['a', 'b', 'c']) await makeIncompressibleRepo(join(repos, `${name}.git`), 6, MiB);
    for (const name of ['d', 'e', 'f']) await makeIncompressibleRepo(join(repos, `${name}.git`), 12, MiB);
    upstream = await startGitUpstream(join(root, 'upstream'));
  });

  after(async () => {
    for (const sidecar of sidecars) await sidecar.shutdown();
    await upstream?.close();
    for (const fs of mounts) await fs.unmount();
    await removeDir(root);
  });

  async function sidecarOn(name: string, env: Record<string, string>) {
    const fs = await mountSmallFilesystem(join(root, name), '64m');
    mounts.push(fs);
    const sidecar = await startTestSidecar({
      GITMIRROR_DATA_DIR: fs.dir,
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_ALLOWED_HOSTS: upstream.host,
      ...env,
    });
    sidecars.push(sidecar);
    return { sidecar, fs };
  }

  const list = async (sidecar: RunningSidecar) =>
    (await (await fetch(`${sidecar.adminUrl}/v1/mirrors`)).json()) as MirrorList;

  it('refuses a snapshot larger than the budget before writing a byte, and says by how much', async () => {
    const store = join(root, 'store');
    // A writer with room publishes the snapshot (12 MiB that do not compress).
    const writer = await startTestSidecar({
      GITMIRROR_DATA_DIR: join(root, 'writer'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_MIRRORS: upstream.url('org/big.git'),
      GITMIRROR_SNAPSHOT_STORE: `file://${store}`,
    });
    sidecars.push(writer);
    const id = `${upstream.host}/org/big`;
    await waitFor('writer ready', () => writer.isReady(), { timeoutMs: 60_000 });
    await writer.mirrors.snapshot(writer.mirrors.get(id)!);
    const packsBefore = upstream.packResponses({ viaCache: false });

    const { sidecar, fs } = await sidecarOn('refuses', {
      GITMIRROR_DATA_BUDGET: '8MiB',
      GITMIRROR_MIRRORS: upstream.url('org/big.git'),
      GITMIRROR_SNAPSHOT_STORE: `file://${store}`,
    });
    const freeAtStart = await filesystemFreeBytes(fs.dir);
    const mirror = sidecar.mirrors.get(id)!;
    await waitFor('warm-up refused', () => mirror.state === 'failed', { timeoutMs: 60_000 });

    const status = (await list(sidecar)).mirrors.find((m) => m.id === id)!;
    assert.match(
      status.restore.error ?? '',
      /^INSUFFICIENT_STORAGE: restore of .*\/org\/big needs 12\.\d+ MiB: the data budget is 8 MiB, 0 B held, 0 B reserved for writes under way, 0 B evictable; 4\.\d+ MiB missing$/,
    );
    assert.equal(status.restore.bytesDone, 0, 'not a byte downloaded');
    assert.equal(status.disk?.shortfall?.limitBytes, 8 * MiB);
    assert.ok(
      status.disk!.shortfall!.missingBytes > 4 * MiB && status.disk!.shortfall!.missingBytes < 5 * MiB,
    );
    assert.deepEqual(await readdir(join(fs.dir, 'tmp')), [], 'nothing was extracted');
    assert.ok(freeAtStart - (await filesystemFreeBytes(fs.dir)) < 64 * 1024, 'nothing was written');
    assert.equal(upstream.packResponses({ viaCache: false }), packsBefore, 'no clone was tried instead');
    assert.equal((await list(sidecar)).storage?.refusals, 1);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(
        `gitmirror_mirror_storage_shortfall_bytes\\{mirror="${id.replace(/[.]/g, '\\.')}"\\} \\d{7}`,
      ),
    );
    assert.match(metrics, /gitmirror_storage_refusals_total 1/);
  });

  it('evicts on-demand mirrors served longest ago to hold configured ones, and never a configured one', async () => {
    const { sidecar } = await sidecarOn('evicts', { GITMIRROR_DATA_BUDGET: '30MiB' });
    const url = (name: string) => `${sidecar.gitUrl}/git/${upstream.host}/org/${name}.git`;
    const idOf = (name: string) => `${upstream.host}/org/${name}`;
    // Three on-demand mirrors, made by clients in the order a, b, c ...
    for (const name of ['a', 'b', 'c']) {
      await git(['ls-remote', url(name)]);
      await waitFor(`${name} mirrored`, () => sidecar.mirrors.get(idOf(name))?.ready, { timeoutMs: 60_000 });
    }
    // ... then served c, then a: b was served longest ago, though it is not the oldest.
    for (const name of ['c', 'a']) {
      await new Promise((r) => setTimeout(r, 20));
      await git(['ls-remote', url(name)]);
    }
    const held = () => list(sidecar).then((l) => l.mirrors.map((m) => m.id.split('/').at(-1)).sort());
    assert.deepEqual(await held(), ['a', 'b', 'c']);

    const configure = (name: string) =>
      configureMirror(sidecar, { id: idOf(name), url: upstream.url(`org/${name}.git`) });

    // 12 MiB configured: b goes, the one served longest ago; a and c stay.
    assert.equal((await configure('d')).state, 'ready');
    assert.deepEqual(await held(), ['a', 'c', 'd']);
    // Another 12 MiB: the rest of the on-demand mirrors go, c before a.
    assert.equal((await configure('e')).state, 'ready');
    assert.deepEqual(await held(), ['d', 'e']);
    const { storage } = await list(sidecar);
    assert.deepEqual(
      storage?.evicted.map((e) => [e.holder, e.tier, e.count]),
      [['mirrors', 'idle-mirror', 3]],
    );
    assert.ok(storage!.usedBytes <= 30 * MiB);

    // A third does not fit beside the two configured ones: refused, and both stay.
    const f = await configure('f');
    assert.equal(f.state, 'failed');
    assert.match(
      f.restore.error ?? '',
      /INSUFFICIENT_STORAGE: clone of .*\/org\/f needs [\d.]+ MiB: the data budget is 30 MiB, .*; [\d.]+ MiB missing/,
    );
    assert.deepEqual(await held(), ['d', 'e', 'f']);
    for (const name of ['d', 'e']) assert.equal(sidecar.mirrors.get(idOf(name))?.ready, true);
    assert.deepEqual(await readdir(join(sidecar.config.dataDir, 'tmp')), []);
  });
});
