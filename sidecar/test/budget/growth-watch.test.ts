import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git } from '../../../testing/git.ts';
import {
  mountSmallFilesystem,
  type SmallFilesystem,
  smallFilesystemSkipReason,
} from '../../../testing/small-filesystem.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { DiskBudget } from '../../src/budget/disk-budget.ts';
import { watchGrowth } from '../../src/budget/growth-watch.ts';
import { type HeldMirror, MirrorBytes } from '../../src/budget/mirror-bytes.ts';
import { cloneBytes } from '../../src/budget/size-estimates.ts';
import { treeBytes } from '../../src/budget/tree-usage.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';

const MiB = 1024 * 1024;

describe('a clone nobody could size, on a real small filesystem', {
  skip: await smallFilesystemSkipReason(),
}, () => {
  let root: string;
  let upstream: string;
  let fs: SmallFilesystem;
  let slowUploadPack: string;

  before(async () => {
    root = await tempDir();
    const work = join(root, 'work');
    await git(['init', '--quiet', '--initial-branch=main', work]);
    for (let i = 0; i < 4; i++) {
      await writeFile(join(work, `part-${i}.bin`), randomBytes(10 * MiB));
      await git(['add', '.'], { cwd: work });
      await git(['commit', '--quiet', '-m', `part ${i}`], { cwd: work });
    }
    upstream = join(root, 'upstream.git');
    await git(['clone', '--quiet', '--bare', work, upstream]);
    fs = await mountSmallFilesystem(join(root, 'data'), '96m');
    slowUploadPack = await writeSlowUploadPack(root, 2 * MiB);
  });

  after(async () => {
    await fs?.unmount();
    await removeDir(root);
  });

  /**
   * Two mirrors on the volume: a configured one of 4 MiB and an idle on-demand one of 12 MiB,
   * so the clone needs the eviction well before it cannot fit even with it: a slow watch on a
   * loaded machine still sees the clone in between.
   */
  async function setUp(limitBytes: number) {
    await removeDir(join(fs.dir, 'mirrors'));
    await removeDir(join(fs.dir, 'tmp'));
    await mkdir(join(fs.dir, 'tmp'), { recursive: true });
    const mirrors: (HeldMirror & { dir: string; removed?: boolean })[] = [];
    for (const [name, configured, size] of [
      ['configured', true, 4 * MiB],
      ['on-demand', false, 12 * MiB],
    ] as const) {
      const src = join(root, `${name}-src`);
      await removeDir(src);
      await git(['init', '--quiet', '--initial-branch=main', src]);
      await writeFile(join(src, 'f.bin'), randomBytes(size));
      await git(['add', '.'], { cwd: src });
      await git(['commit', '--quiet', '-m', name], { cwd: src });
      const dir = join(fs.dir, 'mirrors', `${name}.git`);
      await git(['clone', '--quiet', '--mirror', '--no-local', src, dir]);
      mirrors.push({ id: name, dir, bytes: await treeBytes(dir), configured, lastServedAt: 0, busy: false });
    }
    const holder = new MirrorBytes({
      mirrors: () => mirrors.filter((m) => !m.removed),
      remove: async (id) => {
        const m = mirrors.find((x) => x.id === id)!;
        m.removed = true;
        await removeDir(m.dir);
      },
    });
    const budget = new DiskBudget({ limitBytes, dataDir: fs.dir });
    budget.add(holder);
    return { budget, mirrors };
  }

  /** Clones upstream into the volume's tmp/ under a growth watch, as the warm-up does. */
  async function cloneWatched(budget: DiskBudget, { slow }: { slow: boolean }) {
    const reservation = await budget.reserve({ bytes: cloneBytes({}).bytes, purpose: 'clone of upstream' });
    const temp = join(fs.dir, 'tmp', 'clone-1');
    const abort = new AbortController();
    let exhausted: Error | undefined;
    let peak = 0;
    const watch = watchGrowth({
      reservation,
      intervalMs: 20,
      measure: async () => {
        const bytes = await treeBytes(temp);
        peak = Math.max(peak, bytes);
        return bytes;
      },
      onExhausted: (err) => {
        exhausted = err;
        abort.abort(err);
      },
    });
    const outcome = await new ProcessGitRunner()
      .run({
        args: [
          'clone',
          '--mirror',
          '--quiet',
          '--no-local',
          ...(slow ? ['--upload-pack', slowUploadPack] : []),
          '--',
          upstream,
          temp,
        ],
        timeoutMs: 120_000,
        signal: abort.signal,
      })
      .then(
        () => 'cloned' as const,
        (err: unknown) => err,
      );
    const finalBytes = await watch.stop();
    return { outcome, exhausted, peak, finalBytes, reservation, temp };
  }

  it('aborts the clone once it would pass the budget, after evicting what may go, never the configured mirror', async () => {
    const limit = 32 * MiB;
    const { budget, mirrors } = await setUp(limit);
    const { outcome, exhausted, peak, reservation, temp } = await cloneWatched(budget, { slow: true });

    assert.ok(isGitMirrorError(outcome, 'ABORTED'), `the clone was aborted: ${String(outcome)}`);
    assert.ok(isGitMirrorError(exhausted, 'INSUFFICIENT_STORAGE'));
    assert.match(exhausted.message, /^clone of upstream needs [\d.]+ MiB: the data budget is 32 MiB, /);
    assert.deepEqual(
      mirrors.filter((m) => m.removed).map((m) => m.id),
      ['on-demand'],
    );
    const configuredBytes = await treeBytes(mirrors[0]!.dir);
    // The clone never got past the budget by more than a few intervals' worth of its 2 MiB/s.
    assert.ok(
      peak + configuredBytes < limit + 8 * MiB,
      `peak ${peak} + ${configuredBytes} within 32 MiB + 8 MiB`,
    );
    reservation.release();
    await removeDir(temp);
    assert.deepEqual(await readdir(join(fs.dir, 'mirrors')), ['configured.git']);
  });

  it('lets a clone that fits grow its reservation as it goes', async () => {
    const { budget, mirrors } = await setUp(80 * MiB);
    const { outcome, exhausted, finalBytes, reservation } = await cloneWatched(budget, { slow: false });
    assert.equal(outcome, 'cloned');
    assert.equal(exhausted, undefined);
    assert.ok(finalBytes > 40 * MiB);
    assert.ok(reservation.bytes >= finalBytes, `${reservation.bytes} reserved for ${finalBytes} written`);
    assert.ok(mirrors.every((m) => !m.removed));
    reservation.release();
  });
});

/**
 * An upload-pack whose pack reaches the client at most `bytesPerSecond`, as from a network
 * upstream. A local clone writes 40 MiB faster than a loaded machine's timer measures it: the
 * write then jumps past what even eviction could free, the budget rightly evicts nothing, and
 * the test would race the watch instead of testing its evict-then-abort order.
 */
async function writeSlowUploadPack(dir: string, bytesPerSecond: number): Promise<string> {
  const throttle = join(dir, 'throttle.mjs');
  await writeFile(
    throttle,
    `import { once } from 'node:events';
const started = Date.now();
let sent = 0;
for await (const chunk of process.stdin) {
  sent += chunk.length;
  const wait = started + (sent / ${bytesPerSecond}) * 1000 - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
}
`,
  );
  const script = join(dir, 'slow-upload-pack');
  await writeFile(script, `#!/bin/sh\ngit-upload-pack "$@" | '${process.execPath}' '${throttle}'\n`);
  await chmod(script, 0o755);
  return script;
}
