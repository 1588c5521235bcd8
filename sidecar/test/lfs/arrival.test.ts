import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { Arrival } from '../../src/lfs/arrival.ts';

/** A body the test feeds chunk by chunk, and ends (or breaks) when it decides. */
function controlledBody() {
  const queue: (Buffer | Error | null)[] = [];
  let wake: (() => void) | undefined;
  const push = (item: Buffer | Error | null) => {
    queue.push(item);
    wake?.();
  };
  async function* body(): AsyncGenerator<Buffer> {
    while (true) {
      if (queue.length === 0) await new Promise<void>((r) => (wake = r));
      const item = queue.shift()!;
      if (item === null) return;
      if (item instanceof Error) throw item;
      yield item;
    }
  }
  return { body: body(), push };
}

/** Collects a stream, recording how many bytes had come before it ended or failed. */
function collect(stream: Readable) {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const received = () => chunks.reduce((n, c) => n + c.length, 0);
  const done = new Promise<Buffer>((resolve, reject) => {
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
  done.catch(() => {});
  return { received, done };
}

const settle = () => new Promise((r) => setTimeout(r, 30));

describe('an arriving LFS object', () => {
  let root: string;
  const content = Buffer.alloc(300_000, 7);
  const object = { oid: createHash('sha256').update(content).digest('hex'), size: content.length };

  before(async () => {
    root = await tempDir('gitmirror-arrival-');
  });
  after(() => removeDir(root));

  it('feeds readers as bytes arrive but holds the last byte until the sha256 matched', async () => {
    const { body, push } = controlledBody();
    const arrival = await Arrival.start({ object, tempPath: join(root, 'a'), body, label: 'test' });
    const early = collect(arrival.follow());
    push(content.subarray(0, 100_000));
    await settle();
    assert.equal(early.received(), 100_000);
    push(content.subarray(100_000));
    await settle();
    // Every byte is on disk, none of the verdict is in: one byte short of complete.
    assert.equal(early.received(), content.length - 1);
    const late = collect(arrival.follow({ start: 250_000, end: content.length - 1 }));
    push(null);
    assert.deepEqual(await early.done, content);
    assert.deepEqual(await late.done, content.subarray(250_000));
    await arrival.done;
    assert.deepEqual(await readFile(join(root, 'a')), content);
    arrival.retire();
  });

  it('fails every reader short of the object when the content does not hash to the oid', async () => {
    const { body, push } = controlledBody();
    const arrival = await Arrival.start({ object, tempPath: join(root, 'b'), body, label: 'upstream' });
    const reader = collect(arrival.follow());
    const wrong = Buffer.from(content);
    wrong[5] = 0;
    push(wrong);
    push(null);
    await assert.rejects(reader.done, {
      code: 'LFS_OBJECT_CORRUPT',
      message: /upstream sent content whose sha256/,
    });
    await assert.rejects(arrival.done, { code: 'LFS_OBJECT_CORRUPT' });
    assert.ok(reader.received() < content.length, 'a reader never gets a complete wrong object');
    arrival.retire();
  });

  it('fails on a short body, on a body longer than the size at once, and on a broken source', async () => {
    const short = controlledBody();
    const a = await Arrival.start({ object, tempPath: join(root, 'c'), body: short.body, label: 'upstream' });
    short.push(content.subarray(0, 1000));
    short.push(null);
    await assert.rejects(a.done, { code: 'LFS_OBJECT_CORRUPT', message: /ended after 1000 of 300000 bytes/ });

    const long = controlledBody();
    const b = await Arrival.start({ object, tempPath: join(root, 'd'), body: long.body, label: 'upstream' });
    long.push(Buffer.concat([content, Buffer.alloc(1)]));
    await assert.rejects(b.done, {
      code: 'LFS_OBJECT_CORRUPT',
      message: /more than the object's 300000 bytes/,
    });

    const broken = controlledBody();
    const c = await Arrival.start({
      object,
      tempPath: join(root, 'e'),
      body: broken.body,
      label: 'upstream',
    });
    const reader = collect(c.follow());
    broken.push(content.subarray(0, 10));
    broken.push(new Error('ECONNRESET'));
    await assert.rejects(reader.done, { code: 'UPSTREAM_FAILED', message: /broke off after 10 bytes/ });
    for (const x of [a, b, c]) x.retire();
  });

  it('an empty object arrives and verifies', async () => {
    const empty = { oid: createHash('sha256').digest('hex'), size: 0 };
    const { body, push } = controlledBody();
    const arrival = await Arrival.start({ object: empty, tempPath: join(root, 'f'), body, label: 'test' });
    const reader = collect(arrival.follow());
    push(null);
    assert.equal((await reader.done).length, 0);
    arrival.retire();
  });
});
