import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';

export interface SyntheticRepoOptions {
  commits: number;
  /** Files rewritten per commit, out of a working set of `files`. */
  filesPerCommit: number;
  files: number;
  /** Bytes per file version; part is pseudo-random so packs do not compress to nothing. */
  fileBytes: number;
  /** Extra branches and tags pointing along the history. */
  refs: number;
  seed?: number;
}

/** Deterministic PRNG (mulberry32): the same options always give the same repository. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Builds a bare repository with `git fast-import`, which writes thousands of commits per
 * second, so demos and benchmarks can make realistic histories in seconds. Refs are
 * branches `branch-N` and tags `v0.N` spread over the history, plus `main`.
 */
export async function createSyntheticRepo(bareDir: string, options: SyntheticRepoOptions): Promise<void> {
  await mkdir(bareDir, { recursive: true });
  await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bareDir]);
  const child = spawn('git', ['fast-import', '--quiet', '--done'], {
    cwd: bareDir,
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  const random = prng(options.seed ?? 42);
  const refEvery = Math.max(1, Math.floor(options.commits / Math.max(1, options.refs)));
  const write = async (text: string | Buffer) => {
    if (!child.stdin.write(text)) await once(child.stdin, 'drain');
  };
  for (let i = 1; i <= options.commits; i++) {
    await write(commitCommand(i, options, random));
    if (i % refEvery === 0 && i / refEvery <= options.refs) {
      const n = i / refEvery;
      await write(
        n % 2 ? `reset refs/heads/branch-${n}\nfrom :${i}\n\n` : `reset refs/tags/v0.${n}\nfrom :${i}\n\n`,
      );
    }
  }
  await write('done\n');
  child.stdin.end();
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`git fast-import exited with ${code}`);
}

function commitCommand(i: number, o: SyntheticRepoOptions, random: () => number): string {
  const lines = [
    `commit refs/heads/main`,
    `mark :${i}`,
    `committer Demo <demo@example.com> ${1_700_000_000 + i * 60} +0000`,
  ];
  const message = `commit ${i}\n`;
  lines.push(`data ${Buffer.byteLength(message)}`, message.trimEnd());
  if (i > 1) lines.push(`from :${i - 1}`);
  for (let f = 0; f < o.filesPerCommit; f++) {
    const file = Math.floor(random() * o.files);
    const content = fileContent(i, file, o.fileBytes, random);
    lines.push(
      `M 100644 inline dir-${file % 32}/file-${file}.txt`,
      `data ${Buffer.byteLength(content)}`,
      content,
    );
  }
  return `${lines.join('\n')}\n\n`;
}

/** Half repeated text (deltas well), half pseudo-random hex (does not). */
function fileContent(commit: number, file: number, bytes: number, random: () => number): string {
  const head = `file ${file} at commit ${commit}\n`;
  const text = 'the quick brown fox jumps over the lazy dog\n'
    .repeat(Math.ceil(bytes / 2 / 44))
    .slice(0, bytes / 2);
  let noise = '';
  while (noise.length < bytes / 2)
    noise += Math.floor(random() * 2 ** 32)
      .toString(16)
      .padStart(8, '0');
  return `${head}${text}${noise.slice(0, bytes / 2)}\n`;
}

function run(command: string, args: string[]): Promise<void> {
  const child = spawn(command, args, { stdio: 'inherit' });
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`${command} ${args[0]} exited with ${code}`);
  });
}
