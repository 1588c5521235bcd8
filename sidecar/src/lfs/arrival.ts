import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { LfsObjectId } from './oid.ts';

const READ_CHUNK = 1024 * 1024;

export type ArrivalState = 'receiving' | 'verified' | 'failed';

/**
 * One object arriving into a temp file, checked against its oid (sha256) and size while the
 * bytes stream in. Any number of readers follow it as it grows, each from its own offset, so a
 * client asking while the object is still on its way shares this one download rather than
 * starting another.
 *
 * Nothing unverified is ever delivered whole: a reader gets every byte of its range except
 * the last until the digest has matched, and fails if it does not, so a client sees a broken
 * response (short of its Content-Length) rather than a complete wrong one.
 */
export class Arrival {
  readonly object: LfsObjectId;
  readonly tempPath: string;
  /** Resolves once the object is complete and verified; rejects with the reason it is not. */
  readonly done: Promise<void>;
  private readonly handle: FileHandle;
  private readonly label: string;
  private written = 0;
  private stateValue: ArrivalState = 'receiving';
  private failure?: GitMirrorError;
  private changed = Promise.withResolvers<void>();
  private readers = 0;
  private retired = false;
  private closed = false;

  private constructor(options: ArrivalOptions, handle: FileHandle) {
    this.object = options.object;
    this.tempPath = options.tempPath;
    this.label = options.label;
    this.handle = handle;
    const body = options.onBytes ? countBytes(options.body, options.onBytes) : options.body;
    this.done = this.receive(body);
    // Readers observe failures through their streams; nobody need await `done` itself.
    this.done.catch(() => {});
  }

  /** Starts receiving `body` into a new file at `tempPath`, which must not exist yet. */
  static async start(options: ArrivalOptions): Promise<Arrival> {
    const handle = await open(options.tempPath, 'wx+', 0o644);
    return new Arrival(options, handle);
  }

  get state(): ArrivalState {
    return this.stateValue;
  }

  get bytesReceived(): number {
    return this.written;
  }

  /** A stream of bytes `start..end` (inclusive; default the whole object) as they arrive. */
  follow(range?: { start: number; end: number }): Readable {
    if (this.closed) throw new GitMirrorError('ABORTED', `the arrival of ${this.object.oid} is over`);
    const start = range?.start ?? 0;
    const end = range?.end ?? this.object.size - 1;
    this.readers++;
    return new ArrivalReader(this, start, end, () => {
      this.readers--;
      void this.closeIfIdle();
    });
  }

  /**
   * The owner is done with it (the file was renamed into place or discarded): the file handle
   * closes once the last reader has finished.
   */
  retire(): void {
    this.retired = true;
    void this.closeIfIdle();
  }

  private async closeIfIdle(): Promise<void> {
    if (this.closed || !this.retired || this.readers > 0) return;
    this.closed = true;
    await this.handle.close().catch(() => {});
  }

  /** How far a reader may read (exclusive) and whether the bytes are final. Throws on failure. */
  readableUpTo(): { upTo: number; verified: boolean } {
    if (this.failure) throw this.failure;
    return { upTo: this.written, verified: this.stateValue === 'verified' };
  }

  /** Resolves at the next change: more bytes, verified, or failed. */
  nextChange(): Promise<void> {
    return this.changed.promise;
  }

  read(buffer: Buffer, length: number, position: number): Promise<number> {
    return this.handle.read(buffer, 0, length, position).then((r) => r.bytesRead);
  }

  /** Syncs the verified file to disk, so a crash never leaves a short file under its final name. */
  async sync(): Promise<void> {
    await this.handle.sync();
  }

  private signalChange(): void {
    const previous = this.changed;
    this.changed = Promise.withResolvers<void>();
    previous.resolve();
  }

  private async receive(body: AsyncIterable<Buffer>): Promise<void> {
    const hash = createHash('sha256');
    const { oid, size } = this.object;
    try {
      for await (const chunk of body) {
        if (this.written + chunk.length > size)
          throw this.corrupt(`sent more than the object's ${size} bytes`);
        let offset = 0;
        while (offset < chunk.length) {
          const { bytesWritten } = await this.handle.write(
            chunk,
            offset,
            chunk.length - offset,
            this.written,
          );
          offset += bytesWritten;
          this.written += bytesWritten;
        }
        hash.update(chunk);
        this.signalChange();
      }
      if (this.written !== size) throw this.corrupt(`ended after ${this.written} of ${size} bytes`);
      const digest = hash.digest('hex');
      if (digest !== oid) throw this.corrupt(`sent content whose sha256 is ${digest}`);
      this.stateValue = 'verified';
      this.signalChange();
    } catch (err) {
      this.failure = isGitMirrorError(err)
        ? err
        : new GitMirrorError(
            'UPSTREAM_FAILED',
            `${this.label} broke off after ${this.written} bytes of ${oid}`,
            {
              cause: err,
            },
          );
      this.stateValue = 'failed';
      this.signalChange();
      throw this.failure;
    }
  }

  private corrupt(what: string): GitMirrorError {
    return new GitMirrorError(
      'LFS_OBJECT_CORRUPT',
      `${this.label} ${what} for LFS object ${this.object.oid}`,
    );
  }
}

export interface ArrivalOptions {
  object: LfsObjectId;
  tempPath: string;
  body: AsyncIterable<Buffer>;
  /** Names the source in error messages ("upstream", "the store"). */
  label: string;
  /** Counts bytes as they come in (metrics). */
  onBytes?: (n: number) => void;
}

/**
 * Reads a range of an arriving object with positional reads on the arrival's own file
 * handle, so it keeps working when the file is renamed into the store or discarded.
 */
class ArrivalReader extends Readable {
  private readonly arrival: Arrival;
  private position: number;
  private readonly end: number;
  private readonly release: () => void;
  private pumping = false;
  private released = false;

  constructor(arrival: Arrival, start: number, end: number, release: () => void) {
    super({ highWaterMark: READ_CHUNK });
    this.arrival = arrival;
    this.position = start;
    this.end = end;
    this.release = release;
  }

  override _read(): void {
    if (!this.pumping) void this.pump();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.releaseOnce();
    callback(err);
  }

  private releaseOnce(): void {
    if (this.released) return;
    this.released = true;
    this.release();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.destroyed) {
        const { upTo, verified } = this.arrival.readableUpTo();
        // The last byte of the range waits for the verdict on the whole object.
        const limit = verified ? this.end + 1 : Math.min(upTo, this.end);
        if (this.position > this.end && verified) {
          this.push(null);
          this.releaseOnce();
          return;
        }
        if (this.position >= limit) {
          await this.arrival.nextChange();
          continue;
        }
        const length = Math.min(READ_CHUNK, limit - this.position);
        const buffer = Buffer.allocUnsafe(length);
        const n = await this.arrival.read(buffer, length, this.position);
        if (n === 0)
          throw new GitMirrorError('LFS_OBJECT_CORRUPT', 'the arriving file is shorter than reported');
        this.position += n;
        if (!this.push(buffer.subarray(0, n))) return;
      }
    } catch (err) {
      this.destroy(err as Error);
    } finally {
      this.pumping = false;
    }
  }
}

async function* countBytes(
  body: AsyncIterable<Buffer>,
  onBytes: (n: number) => void,
): AsyncGenerator<Buffer> {
  for await (const chunk of body) {
    onBytes(chunk.length);
    yield chunk;
  }
}
