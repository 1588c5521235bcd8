import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CreateMultipartUploadCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BUCKET, type Environment, STORE_PREFIX } from '../scenarios/support/environment.ts';
import type { InvariantId } from './invariants.ts';
import { SABOTAGES, type Sabotage } from './sabotage.ts';
import { runSoak, type SoakResult } from './soak.ts';

/**
 * Every invariant of the soak can fail: one short soak of deliberately broken builds (the real
 * image, patched at start through NODE_OPTIONS by sabotage.ts), each of which one invariant
 * must catch, with the violation naming what broke. Two faults of the store are made by hand
 * (no sidecar patch reaches them): an archive that lost its tail under its latest.json, and a
 * multipart upload nobody finished.
 *
 * The load runs 3 minutes with one fault, a scale-up, while S3 serves archives at 512 KiB/s,
 * so the new pods' restores take long enough for a sidecar that claims to be warm too early
 * to be caught in the act.
 */

const EXPECTED: Record<Sabotage, RegExp> = {
  'fd-leak': /^sidecar .*open fds grow/,
  'memory-leak': /^sidecar .*memory grows/,
  'operator-memory-leak': /^operator .*memory grows/,
  'ready-early': /Ready: .* is not on its disk/,
  'two-writers': /writers gitmirror-cache-.*, gitmirror-cache-/,
  flaky: /^(clone|checkout|partial|fetch|lfs|ls-remote) .* via gitmirror-cache-/,
  stale: /s behind$/,
  'bad-object': /fsck: .*missingAuthor/,
  'temp-leftover': /tmp\/sabotage-\d+/,
  orphan: /sleep 86400/,
  'disk-hog': /over its budget/,
  'no-restore': /: \S+\/medium came from clone/,
};

describe('a soak of sabotaged builds', { timeout: 40 * 60_000 }, () => {
  let result: SoakResult;
  let outDir: string;
  const broken = (id: InvariantId) => result.report.results.find((r) => r.id === id)!;

  before(
    async () => {
      outDir = await mkdtemp(join(tmpdir(), 'gitmirror-soak-sabotage-'));
      const runMs = 3 * 60_000;
      result = await runSoak({
        minutes: 3,
        seed: 1,
        rate: 12,
        outDir,
        sabotage: Object.keys(SABOTAGES) as Sabotage[],
        dataBudgetMiB: 256,
        plan: {
          seed: 1,
          runMs,
          chaosStartMs: 0,
          chaosEndMs: runMs,
          faults: [{ kind: 'scale', atMs: 20_000, durationMs: 30_000, pick: 0 }],
        },
        beforeLoad: async (env) => {
          env.faults!.s3.inject(
            { kind: 'latency', bytesPerSecond: 512 * 1024 },
            { method: 'GET', path: /\.tar\.zst/ },
          );
        },
        beforeFinalChecks: damageStore,
        log: (line) => console.error(line),
      });
      // The whole soak runs in this hook: `npm run e2e`'s per-test timeout (15 min) is too short.
    },
    { timeout: 40 * 60_000 },
  );

  after(async () => {
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it('fails, and says so on its last line', () => {
    assert.equal(result.report.passed, false);
    assert.notEqual(result.report.markdown.trim().split('\n').at(-1), 'data lost: none');
  });

  for (const [name, pattern] of Object.entries(EXPECTED)) {
    const id = SABOTAGES[name as Sabotage].catches;
    it(`catches ${name} as a broken ${id}`, () => {
      const judged = broken(id);
      assert.equal(judged.ok, false, `${id} held: ${judged.summary}`);
      assert.ok(
        judged.violations.some((v) => pattern.test(v)),
        `no ${id} violation matches ${pattern}:\n${judged.violations.slice(0, 20).join('\n')}`,
      );
    });
  }

  it('catches refs no upstream state had (bad-object’s extra branch)', () => {
    assert.ok(broken('clones-intact').violations.some((v) => /refs that upstream never had/.test(v)));
  });

  it('catches mirrors that never caught up (stale) after the run', () => {
    assert.ok(broken('mirrors-equal-upstream').violations.some((v) => /refs differ from upstream/.test(v)));
  });

  it('catches a latest.json whose archive lost its tail', () => {
    assert.ok(broken('snapshots-whole').violations.some((v) => /^small: .* latest\.json says/.test(v)));
  });

  it('catches a multipart upload nobody finished', () => {
    assert.ok(broken('nothing-left-over').violations.some((v) => /multipart upload of .*sabotage/.test(v)));
  });
});

/** Cuts the archive `small`'s latest.json names in half, and leaves a multipart upload open. */
async function damageStore(env: Environment): Promise<void> {
  const prefix = `${STORE_PREFIX}/${env.mirrorId('small')}/`;
  const manifest = await env.s3.client.send(
    new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}latest.json` }),
  );
  const { key } = JSON.parse(await manifest.Body!.transformToString()) as { key: string };
  const archive = await env.s3.client.send(
    new GetObjectCommand({ Bucket: BUCKET, Key: `${STORE_PREFIX}/${key}` }),
  );
  const bytes = await archive.Body!.transformToByteArray();
  await env.s3.client.send(
    new PutObjectCommand({
      Bucket: BUCKET,
      Key: `${STORE_PREFIX}/${key}`,
      Body: bytes.subarray(0, bytes.length >> 1),
    }),
  );
  await env.s3.client.send(
    new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${prefix}sabotage.tar.zst` }),
  );
}
