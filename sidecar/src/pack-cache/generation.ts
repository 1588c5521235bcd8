import { close, fstat } from 'node:fs';
import { promisify } from 'node:util';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SpawnedProcess } from '../process/child-process.ts';
import type { PackEntry } from './pack-entry.ts';
import { generationArgs, type PackObjectsRequest } from './pack-request.ts';

const fstatAsync = promisify(fstat);
const closeAsync = promisify(close);

export interface GenerationOptions {
  git: GitRunner;
  /** The entry's file, created (empty) and opened for writing by the cache; closed here. */
  fd: number;
  /** The repository pack-objects runs in. */
  dir: string;
  request: PackObjectsRequest;
  timeoutMs: number;
  /** How often the file's size is sampled for readers following it. */
  pollMs: number;
  now: () => number;
}

export type GenerationOutcome = 'success' | 'failed' | 'abandoned';

/**
 * One `git pack-objects` run writing straight into an entry's file: the pack's bytes never
 * pass through the sidecar. Readers learn how far the file has grown from a size sample
 * every `pollMs` (one `fstat` per generation, whatever the number of readers). The entry
 * turns `complete` only after pack-objects exited 0, with the file's final size; any other
 * end turns it `failed`, and the process group is killed so no straggler keeps writing.
 */
export class Generation {
  private readonly entry: PackEntry;
  private proc?: SpawnedProcess;
  private abandoned = false;
  readonly done: Promise<GenerationOutcome>;

  constructor(entry: PackEntry, options: GenerationOptions) {
    this.entry = entry;
    this.done = this.run(options);
  }

  /** Stops a generation nobody reads any more. */
  abandon(): void {
    this.abandoned = true;
    this.proc?.kill();
  }

  private async run(options: GenerationOptions): Promise<GenerationOutcome> {
    const { fd } = options;
    let timer: NodeJS.Timeout | undefined;
    try {
      const proc = options.git.spawn({
        args: generationArgs(options.request),
        cwd: options.dir,
        env: { GIT_DIR: options.dir },
        timeoutMs: options.timeoutMs,
        stdin: options.request.stdin,
        stdoutFd: fd,
      });
      this.proc = proc;
      proc.child.stderr?.on('data', (text: string) => this.entry.progress(text));
      timer = setInterval(sampler(fd, this.entry), options.pollMs);
      await proc.done;
      clearInterval(timer);
      const { size } = await fstatAsync(fd);
      this.entry.completed(size, options.now());
      return 'success';
    } catch (err) {
      this.proc?.kill();
      this.entry.failed(this.abandoned ? 'abandoned: no client reads it any more' : describeError(err));
      return this.abandoned ? 'abandoned' : 'failed';
    } finally {
      clearInterval(timer);
      await closeAsync(fd).catch(() => {});
    }
  }
}

function sampler(fd: number, entry: PackEntry): () => void {
  let busy = false;
  return () => {
    if (busy) return;
    busy = true;
    fstatAsync(fd)
      .then(({ size }) => entry.grew(size))
      .catch(() => {})
      .finally(() => {
        busy = false;
      });
  };
}
