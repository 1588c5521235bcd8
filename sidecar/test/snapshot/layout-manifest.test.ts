import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseRepoId } from '../../../core/repo-id.ts';
import { archiveKey, formatStamp, manifestKey, parseArchiveKey } from '../../src/snapshot/layout.ts';
import {
  findRecord,
  readManifest,
  recordOf,
  SNAPSHOT_FORMAT,
  SNAPSHOT_FORMAT_V1,
  type SnapshotManifest,
  validateManifest,
  writeManifest,
} from '../../src/snapshot/manifest.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';

const repo = parseRepoId('github.com/org/repo');
const commit = 'a'.repeat(40);
const when = new Date('2026-11-24T01:55:36.789Z');

function manifest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    key: archiveKey(repo, when, commit),
    commit,
    createdAt: when.toISOString(),
    sizeBytes: 1234,
    sha256: 'b'.repeat(64),
    format: SNAPSHOT_FORMAT,
    indexBytes: 100,
    ...overrides,
  };
}

describe('snapshot layout', () => {
  it('names archives by UTC second and commit, so lexical order is time order', () => {
    assert.equal(formatStamp(when), '20261124T015536Z');
    assert.equal(archiveKey(repo, when, commit), `github.com/org/repo/20261124T015536Z-${commit}.tar.zst`);
    assert.equal(manifestKey(repo), 'github.com/org/repo/latest.json');
    const keys = ['2026-12-01T00:00:00Z', '2026-01-31T23:59:59Z', '2027-01-01T00:00:00Z'].map((d) =>
      archiveKey(repo, new Date(d), commit),
    );
    assert.deepEqual([...keys].sort(), [keys[1], keys[0], keys[2]]);
  });

  it('parses its own keys back and nothing else', () => {
    const parts = parseArchiveKey(repo, archiveKey(repo, when, commit));
    assert.equal(parts?.commit, commit);
    assert.equal(parts?.createdAt.toISOString(), '2026-11-24T01:55:36.000Z');
    assert.equal(parts?.stamp, '20261124T015536Z');
    const sha256Commit = 'c'.repeat(64);
    assert.equal(parseArchiveKey(repo, archiveKey(repo, when, sha256Commit))?.commit, sha256Commit);
    for (const key of [
      manifestKey(repo),
      `github.com/org/repo/sub/20261124T015536Z-${commit}.tar.zst`,
      `github.com/org/other/20261124T015536Z-${commit}.tar.zst`,
      `github.com/org/repo/20261324T015536Z-${commit}.tar.zst`,
      `github.com/org/repo/20261124T015536Z-${'A'.repeat(40)}.tar.zst`,
      `github.com/org/repo/20261124T015536Z-${commit}.tar.gz`,
    ]) {
      assert.equal(parseArchiveKey(repo, key), undefined, key);
    }
    assert.throws(() => archiveKey(repo, when, 'HEAD'));
  });
});

describe('snapshot manifest', () => {
  it('accepts a well-formed manifest with previous records', () => {
    const older = manifest({ key: archiveKey(repo, new Date('2026-11-23T00:00:00Z'), commit) });
    const m = validateManifest(manifest({ refsDigest: 'd'.repeat(64), previous: [older] }), repo);
    assert.equal(m.previous?.length, 1);
    assert.equal(findRecord(m, String(older.key))?.sizeBytes, 1234);
    assert.equal(findRecord(m, m.key)?.key, m.key);
    assert.equal(findRecord(m, 'github.com/org/repo/other.tar.zst'), undefined);
  });

  it('reads the formats apart: a record of format 1 has no index, one written before formats were per record is format 1', () => {
    const v1 = { format: SNAPSHOT_FORMAT_V1, indexBytes: undefined };
    assert.equal(validateManifest(manifest(v1), repo).format, SNAPSHOT_FORMAT_V1);
    // A manifest of format 1 named only its own format; its previous records named none.
    const oldKey = archiveKey(repo, new Date('2026-11-23T00:00:00Z'), commit);
    const older = {
      key: oldKey,
      commit,
      createdAt: when.toISOString(),
      sizeBytes: 9,
      sha256: 'c'.repeat(64),
    };
    const m = validateManifest(manifest({ previous: [older] }), repo);
    assert.equal(m.format, SNAPSHOT_FORMAT);
    assert.equal(m.indexBytes, 100);
    assert.deepEqual(findRecord(m, oldKey), { ...older, format: SNAPSHOT_FORMAT_V1 });
    assert.deepEqual(recordOf(m), { ...findRecord(m, m.key) });
  });

  const invalid: [string, Record<string, unknown>][] = [
    ['wrong format', { format: 'something/2' }],
    ['key of another repo', { key: archiveKey(parseRepoId('github.com/org/other'), when, commit) }],
    ['key outside any repo', { key: `../../etc/20261124T015536Z-${commit}.tar.zst` }],
    ['commit not matching the key', { commit: 'f'.repeat(40) }],
    ['bad sha256', { sha256: 'xyz' }],
    ['upper-case sha256', { sha256: 'B'.repeat(64) }],
    ['negative size', { sizeBytes: -1 }],
    ['fractional size', { sizeBytes: 1.5 }],
    ['size as string', { sizeBytes: '10' }],
    ['bad createdAt', { createdAt: 'yesterday' }],
    ['bad refsDigest', { refsDigest: 'has spaces and / slashes' }],
    ['previous not an array', { previous: 'x' }],
    ['previous with a bad record', { previous: [{ key: 'x' }] }],
    ['no format', { format: undefined }],
    ['format 2 without its index size', { indexBytes: undefined }],
    ['an index as big as the archive', { indexBytes: 1234 }],
    ['an index size that is not an integer', { indexBytes: 10.5 }],
    ['format 1 with an index size', { format: SNAPSHOT_FORMAT_V1 }],
  ];
  for (const [name, overrides] of invalid) {
    it(`rejects ${name} as SNAPSHOT_CORRUPT`, () => {
      assert.throws(
        () => validateManifest(manifest(overrides), repo),
        (err: { code?: string }) => err.code === 'SNAPSHOT_CORRUPT',
      );
    });
  }

  it('reads what it writes, and reports unreadable manifests as corrupt', async () => {
    const root = await mkdtemp(join(tmpdir(), 'gm-manifest-'));
    try {
      const store = new FileSnapshotStore(root);
      assert.equal(await readManifest(store, repo), undefined);
      const m = validateManifest(manifest(), repo);
      await writeManifest(store, repo, m);
      assert.deepEqual(await readManifest(store, repo), m);
      await assert.rejects(
        writeManifest(store, repo, { ...m, sizeBytes: -5 } as SnapshotManifest),
        (err: { code?: string }) => err.code === 'SNAPSHOT_CORRUPT',
      );
      await store.putBytes(manifestKey(repo), Buffer.from('{not json'));
      await assert.rejects(readManifest(store, repo), /not valid JSON/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
