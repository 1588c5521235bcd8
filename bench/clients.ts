import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { pktLine } from '../sidecar/src/http/pkt-line.ts';
import { GIT_ENV, git } from '../testing/git.ts';

/**
 * The clients the benchmark drives: real `git clone` processes, and a bare upload-pack
 * request sent by curl with the pack streamed to /dev/null (the server's cost alone,
 * without the client's index-pack, which dominates a clone on two cores).
 */

/** Runs a command to completion; resolves with its wall time in seconds. */
function runTimed(command: string, args: string[], signal?: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env: GIT_ENV, stdio: ['ignore', 'ignore', 'pipe'], signal });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    child.once('error', reject);
    child.once('exit', (code, sig) => {
      if (code === 0) resolve((performance.now() - started) / 1000);
      else reject(new Error(`${command} ${args[0]} failed (${sig ?? `exit ${code}`}): ${stderr.trim()}`));
    });
  });
}

/**
 * `git clone --bare`: the whole transfer and index-pack of a CI clone, without a checkout
 * whose cost depends on the disk rather than on who serves the pack.
 */
export async function cloneBare(url: string, target: string, signal?: AbortSignal): Promise<number> {
  try {
    return await runTimed('git', ['clone', '--bare', '--quiet', url, target], signal);
  } finally {
    await rm(target, { recursive: true, force: true });
  }
}

/**
 * A protocol v2 `fetch` of every ref tip, as a fresh clone asks for it, written to a file
 * once so both servers get byte-identical requests.
 */
export async function writeCloneRequest(mirrorDir: string, file: string): Promise<void> {
  const tips = new Set(
    (await git(['for-each-ref', '--format=%(objectname)'], { cwd: mirrorDir })).trim().split('\n'),
  );
  const args = ['thin-pack', 'no-progress', 'ofs-delta', ...[...tips].map((oid) => `want ${oid}`), 'done'];
  const body = `${pktLine('command=fetch\n')}${pktLine('agent=gitmirror-bench\n')}0001${args.map((a) => pktLine(`${a}\n`)).join('')}0000`;
  await writeFile(file, body);
}

/** POSTs the request file to `{repoUrl}/git-upload-pack` and throws the pack away. */
export function uploadPackToNull(
  repoUrl: string,
  requestFile: string,
  signal?: AbortSignal,
): Promise<number> {
  return runTimed(
    'curl',
    [
      '--silent',
      '--show-error',
      '--fail',
      '--output',
      '/dev/null',
      '--header',
      'Git-Protocol: version=2',
      '--header',
      'Content-Type: application/x-git-upload-pack-request',
      '--header',
      'Accept: application/x-git-upload-pack-result',
      '--data-binary',
      `@${requestFile}`,
      `${repoUrl}/git-upload-pack`,
    ],
    signal,
  );
}

export interface ConcurrentResult {
  seconds: number[];
  failures: number;
  errors: string[];
  wallSeconds: number;
}

/** `n` clients started together; a failure is counted, not thrown. */
export async function concurrently(
  n: number,
  client: (i: number) => Promise<number>,
): Promise<ConcurrentResult> {
  const started = performance.now();
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => client(i)));
  const seconds: number[] = [];
  const errors: string[] = [];
  for (const s of settled) {
    if (s.status === 'fulfilled') seconds.push(s.value);
    else errors.push(s.reason instanceof Error ? s.reason.message : String(s.reason));
  }
  return { seconds, failures: errors.length, errors, wallSeconds: (performance.now() - started) / 1000 };
}

/** Clients looping until stopped: background load while something else is measured. */
export function backgroundLoad(
  clients: number,
  client: (i: number, signal: AbortSignal) => Promise<unknown>,
): { stop(): Promise<number> } {
  const abort = new AbortController();
  let completed = 0;
  const loops = Array.from({ length: clients }, async (_, i) => {
    while (!abort.signal.aborted) {
      await client(i, abort.signal).then(
        () => completed++,
        () => {},
      );
    }
  });
  return {
    async stop() {
      abort.abort();
      await Promise.all(loops);
      return completed;
    },
  };
}
