import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { git } from './git.ts';

/** Real git repositories for tests and benchmarks, built with the isolated `git` of git.ts. */

/**
 * A bare upstream repository `root/<name>.git` with `commits` commits on main, a second
 * branch, a tag and a few files per commit, built through a work tree like a user would.
 */
export async function createUpstreamRepo(
  root: string,
  name: string,
  commits = 5,
): Promise<{ bare: string; work: string }> {
  const bare = join(root, `${name}.git`);
  const work = join(root, `${name}-work`);
  await mkdir(join(bare, '..'), { recursive: true });
  await git(['init', '--bare', '--initial-branch=main', bare]);
  await git(['config', 'http.receivepack', 'true'], { cwd: bare });
  await git(['config', 'uploadpack.allowFilter', 'true'], { cwd: bare });
  await git(['clone', bare, work]);
  await git(['checkout', '-b', 'main'], { cwd: work }).catch(() => '');
  for (let i = 0; i < commits; i++)
    await addCommit(work, `file-${i % 3}.txt`, `content ${i}\n`.repeat(50 + i));
  await git(['tag', '-a', 'v1.0', '-m', 'release'], { cwd: work });
  await git(['branch', 'feature'], { cwd: work });
  await git(['push', '--quiet', 'origin', 'main', 'feature', 'v1.0'], { cwd: work });
  return { bare, work };
}

export async function addCommit(
  work: string,
  file: string,
  content: string,
  message = `change ${file}`,
): Promise<string> {
  await writeFile(join(work, file), content);
  await git(['add', file], { cwd: work });
  await git(['commit', '--quiet', '-m', message], { cwd: work });
  return headCommit(work);
}

/**
 * A bare mirror made the way the sidecar makes one: an upstream with a few commits on two
 * branches and a tag, then `git clone --mirror`. Returns the mirror's path.
 */
export async function makeMirror(root: string, commits = 5): Promise<string> {
  const upstream = join(root, 'upstream.git');
  const work = join(root, 'work');
  const mirror = join(root, 'mirror.git');
  await git(['init', '--bare', '--initial-branch=main', upstream]);
  await git(['clone', upstream, work]);
  for (let i = 0; i < commits; i++) {
    await mkdir(join(work, 'dir', `sub${i % 3}`), { recursive: true });
    await writeFile(join(work, 'dir', `sub${i % 3}`, `file${i}.txt`), `content ${i}\n`.repeat(100 + i));
    await git(['add', '-A'], { cwd: work });
    await git(['commit', '-q', '-m', `commit ${i}`], { cwd: work });
  }
  await git(['tag', '-a', 'v1', '-m', 'release 1'], { cwd: work });
  await git(['checkout', '-q', '-b', 'feature'], { cwd: work });
  await writeFile(join(work, 'feature.txt'), 'feature\n');
  await git(['add', '-A'], { cwd: work });
  await git(['commit', '-q', '-m', 'feature'], { cwd: work });
  await git(['push', '-q', 'origin', 'main', 'feature', 'v1'], { cwd: work });
  await git(['clone', '-q', '--mirror', upstream, mirror]);
  return mirror;
}

/**
 * A bare repo with `commits` commits of `blobsPerCommit` new small files each, written by
 * `git fast-import` in one pass: ~(blobs + 2) objects per commit, no work tree, seconds for
 * 100k+ objects.
 */
export async function makeLargeRepo(dir: string, commits: number, blobsPerCommit: number): Promise<string> {
  await git(['init', '--bare', '--initial-branch=main', dir]);
  const parts: string[] = [];
  let mark = 0;
  for (let c = 0; c < commits; c++) {
    const blobMarks: number[] = [];
    for (let b = 0; b < blobsPerCommit; b++) {
      const data = `commit ${c} blob ${b} ${'x'.repeat((c * 7 + b) % 50)}\n`;
      parts.push(`blob\nmark :${++mark}\ndata ${Buffer.byteLength(data)}\n${data}\n`);
      blobMarks.push(mark);
    }
    const message = `commit ${c}\n`;
    parts.push(
      `commit refs/heads/main\nmark :${++mark}\ncommitter Snapshot Test <snapshot@example.invalid> ${1_700_000_000 + c} +0000\n` +
        `data ${Buffer.byteLength(message)}\n${message}`,
    );
    for (const [b, m] of blobMarks.entries()) parts.push(`M 100644 :${m} d${c % 64}/f${c}-${b}.txt\n`);
    parts.push('\n');
  }
  parts.push(`reset refs/tags/big\nfrom refs/heads/main\n\n`);
  await git(['fast-import', '--quiet'], { cwd: dir, input: Buffer.from(parts.join('')) });
  return dir;
}

/**
 * A bare repo whose objects do not compress: `blobs` random blobs of `blobBytes` each in one
 * commit, so the archive is about `blobs × blobBytes` bytes (for multipart-sized uploads).
 */
export async function makeIncompressibleRepo(dir: string, blobs: number, blobBytes: number): Promise<string> {
  await git(['init', '--bare', '--initial-branch=main', dir]);
  const parts: Buffer[] = [];
  for (let b = 1; b <= blobs; b++) {
    parts.push(
      Buffer.from(`blob\nmark :${b}\ndata ${blobBytes}\n`),
      randomBytes(blobBytes),
      Buffer.from('\n'),
    );
  }
  const message = 'random blobs\n';
  parts.push(
    Buffer.from(
      `commit refs/heads/main\ncommitter Snapshot Test <snapshot@example.invalid> 1700000000 +0000\n` +
        `data ${message.length}\n${message}`,
    ),
  );
  for (let b = 1; b <= blobs; b++) parts.push(Buffer.from(`M 100644 :${b} blob-${b}.bin\n`));
  parts.push(Buffer.from('\n'));
  await git(['fast-import', '--quiet'], { cwd: dir, input: Buffer.concat(parts) });
  return dir;
}

export async function headCommit(repo: string): Promise<string> {
  return (await git(['rev-parse', 'HEAD'], { cwd: repo })).trim();
}

/** `for-each-ref` output of a repository: equal strings mean equal refs. */
export async function refsOf(repo: string, pattern = 'refs/'): Promise<string> {
  return git(['for-each-ref', '--format=%(objectname) %(refname)', pattern], { cwd: repo });
}

/** Every object id in a repository, sorted. */
export async function objectsOf(repo: string): Promise<string[]> {
  const out = await git(['cat-file', '--batch-all-objects', '--batch-check=%(objectname)'], { cwd: repo });
  return out.split('\n').filter(Boolean).sort();
}

export async function countObjects(repo: string): Promise<number> {
  const out = await git(['count-objects', '-v'], { cwd: repo });
  const get = (name: string) =>
    Number(/^(\S+): (\d+)$/m.exec(out.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '')?.[2] ?? 0);
  return get('count') + get('in-pack');
}

/** Throws unless `git fsck --full --strict` is clean. */
export async function fsck(repo: string): Promise<void> {
  await git(['fsck', '--full', '--strict', '--no-dangling'], { cwd: repo });
}
