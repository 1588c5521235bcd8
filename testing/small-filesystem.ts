import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface SmallFilesystem {
  dir: string;
  unmount(): Promise<void>;
}

/**
 * A real tmpfs of a fixed size mounted at `dir` (created if needed): writes past it fail with
 * ENOSPC, and statfs reports its own free space. Needs the right to mount (root, as tests run
 * here); `smallFilesystemSkipReason` says why when that right is missing.
 */
export async function mountSmallFilesystem(dir: string, size: string): Promise<SmallFilesystem> {
  await mkdir(dir, { recursive: true });
  await exec('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  return {
    dir,
    unmount: async () => {
      await exec('umount', ['-l', dir]).catch(() => {});
    },
  };
}

/**
 * Why a small filesystem cannot be mounted here (tried once, on a scratch dir), or false when
 * it can: for `describe(..., { skip })`.
 */
export async function smallFilesystemSkipReason(): Promise<string | false> {
  const dir = await mkdtemp(join(tmpdir(), 'gitmirror-probe-'));
  try {
    const fs = await mountSmallFilesystem(join(dir, 'fs'), '1m');
    await fs.unmount();
    return false;
  } catch (err) {
    return `cannot mount a small tmpfs here (${(err as Error).message.split('\n')[0]}); tests on a real full disk need root`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
