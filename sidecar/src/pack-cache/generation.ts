import { type FileHandle, open } from 'node:fs/promises';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SpawnedProcess } from '../process/child-process.ts';
import type { PackEntry } from './pack-entry.ts';
import { generationArgs, type PackObjectsRequest } from './pack-request.ts';

export interface GenerationOptions {
  git: GitRunner;
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
 * pass through the sidecar. The file is created first (exclusively, without blocking the
 * event loop); `created` tells whether it exists, so no reader is handed a path that is
 * not there. Readers learn how far the file has grown from a size sample every `pollMs`
 * (one `fstat` per generation, whatever the number of readers). The entry turns `complete`
 * only after pack-objects exited 0, with the file's final size; any other end turns it
 * `failed`, and the process group is killed so no straggler keeps writing.
 */
export class Generation {
  private readonly entry: PackEntry;
  private proc?: SpawnedProcess;
  private abandoned = false;
  /** Resolves true once the entry's file exists, false if it could not be created. */
  readonly created: Promise<boolean>;
  readonly done: Promise<GenerationOutcome>;

  constructor(entry: PackEntry, options: GenerationOptions) {
    this.entry = entry;
    const file = open(entry.path, 'wx', 0o600);
    this.created = file.then(
      () => true,
      () => false,
    );
    this.done = file.then(
      (handle) => this.run(handle, options),
      (err: Error) => {
        entry.failed(`cannot create the cache file: ${err.message}`);
        return 'failed' as const;
      },
    );
  }

  /** Stops a generation nobody reads any more. */
  abandon(): void {
    this.abandoned = true;
    this.proc?.kill();
  }

  private async run(file: FileHandle, options: GenerationOptions): Promise<GenerationOutcome> {
    let timer: NodeJS.Timeout | undefined;
    try {
      // Its readers may all have left while the file was being created.
      if (this.abandoned) throw new Error('abandoned before it started');
      const proc = options.git.spawn({
        args: generationArgs(options.request),
        cwd: options.dir,
        env: { GIT_DIR: options.dir },
        timeoutMs: options.timeoutMs,
        stdin: options.request.stdin,
        stdoutFd: file.fd,
      });
      this.proc = proc;
      proc.child.stderr?.on('data', (text: string) => this.entry.progress(text));
      timer = setInterval(sampler(file, this.entry), options.pollMs);
      await proc.done;
      clearInterval(timer);
      const { size } = await file.stat();
      this.entry.completed(size, options.now());
      return 'success';
    } catch (err) {
      this.proc?.kill();
      this.entry.failed(this.abandoned ? 'abandoned: no client reads it any more' : describeError(err));
      return this.abandoned ? 'abandoned' : 'failed';
    } finally {
      clearInterval(timer);
      await file.close().catch(() => {});
    }
  }
}

function sampler(file: FileHandle, entry: PackEntry): () => void {
  let busy = false;
  return () => {
    if (busy) return;
    busy = true;
    file
      .stat()
      .then(({ size }) => entry.grew(size))
      .catch(() => {})
      .finally(() => {
        busy = false;
      });
  };
}
