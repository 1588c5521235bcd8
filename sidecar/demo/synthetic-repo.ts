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
  /**
   * What the pseudo-random half of each file version is: `hex` (default) text that zlib
   * halves, or `binary` bytes that no compressor shrinks, so the packed size follows the
   * content size (benchmarks that need hundreds of MiB packed without gigabytes of input).
   */
  noise?: 'hex' | 'binary';
}

/** Deterministic PRNG (mulberry32): the same seed always gives the same sequence in [0, 1). */
export function prng(seed: number): () => number {
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
  const write = async (data: string | Buffer) => {
    if (!child.stdin.write(data)) await once(child.stdin, 'drain');
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

function commitCommand(i: number, o: SyntheticRepoOptions, random: () => number): Buffer {
  const message = `commit ${i}\n`;
  const parts: (string | Buffer)[] = [
    [
      `commit refs/heads/main`,
      `mark :${i}`,
      `committer Demo <demo@example.com> ${1_700_000_000 + i * 60} +0000`,
      `data ${Buffer.byteLength(message)}`,
      message.trimEnd(),
      ...(i > 1 ? [`from :${i - 1}`] : []),
      '',
    ].join('\n'),
  ];
  for (let f = 0; f < o.filesPerCommit; f++) {
    const file = Math.floor(random() * o.files);
    const content = fileContent(i, file, o.fileBytes, o.noise ?? 'hex', random);
    parts.push(`M 100644 inline dir-${file % 32}/file-${file}.txt\ndata ${content.length}\n`, content, '\n');
  }
  parts.push('\n');
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
}

/** Half repeated text (deltas well), half pseudo-random (does not). */
function fileContent(
  commit: number,
  file: number,
  bytes: number,
  noise: 'hex' | 'binary',
  random: () => number,
): Buffer {
  const head = `file ${file} at commit ${commit}\n`;
  const text = 'the quick brown fox jumps over the lazy dog\n'
    .repeat(Math.ceil(bytes / 2 / 44))
    .slice(0, bytes / 2);
  const noiseBytes = Math.floor(bytes / 2);
  if (noise === 'binary') {
    const random32 = Buffer.alloc(Math.ceil(noiseBytes / 4) * 4);
    for (let at = 0; at < random32.length; at += 4)
      random32.writeUInt32LE(Math.floor(random() * 2 ** 32), at);
    return Buffer.concat([
      Buffer.from(`${head}${text}`),
      random32.subarray(0, noiseBytes),
      Buffer.from('\n'),
    ]);
  }
  let hex = '';
  while (hex.length < bytes / 2)
    hex += Math.floor(random() * 2 ** 32)
      .toString(16)
      .padStart(8, '0');
  return Buffer.from(`${head}${text}${hex.slice(0, bytes / 2)}\n`);
}

function run(command: string, args: string[]): Promise<void> {
  const child = spawn(command, args, { stdio: 'inherit' });
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`${command} ${args[0]} exited with ${code}`);
  });
}
