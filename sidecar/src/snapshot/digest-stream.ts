import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

export interface DigestExpectations {
  /** Fail as soon as more bytes than this pass, and at the end if fewer did. */
  expectedSize?: number;
  /** Lower-case hex sha256 the whole stream must have; checked at the end. */
  expectedSha256?: string;
  onProgress?: (bytesDone: number) => void;
  /** Names the stream in error messages. */
  label: string;
}

/**
 * Pass-through that measures size and sha256 of what flows through it, so an archive is
 * hashed on its way to the store (no second read, no temp copy) and verified on its way
 * back. A stream that does not match ends in an error instead of ending cleanly, so
 * everything downstream of a pipeline sees the failure.
 */
export class DigestStream extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  private readonly expect: DigestExpectations;
  private hex: string | undefined;

  constructor(expect: DigestExpectations) {
    super();
    this.expect = expect;
  }

  /** Hex sha256 of everything that passed; available once the stream has ended. */
  get sha256(): string {
    if (this.hex === undefined) throw new Error('digest read before the stream ended');
    return this.hex;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    const { expectedSize } = this.expect;
    if (expectedSize !== undefined && this.bytes > expectedSize) {
      callback(this.mismatch(`more than the expected ${expectedSize} bytes`));
      return;
    }
    this.hash.update(chunk);
    this.expect.onProgress?.(this.bytes);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.hex = this.hash.digest('hex');
    const { expectedSize, expectedSha256 } = this.expect;
    if (expectedSize !== undefined && this.bytes !== expectedSize) {
      callback(this.mismatch(`${this.bytes} bytes instead of ${expectedSize}`));
    } else if (expectedSha256 !== undefined && this.hex !== expectedSha256) {
      callback(this.mismatch(`sha256 ${this.hex} instead of ${expectedSha256}`));
    } else {
      callback();
    }
  }

  private mismatch(detail: string): GitMirrorError {
    return new GitMirrorError(
      'SNAPSHOT_CORRUPT',
      `${this.expect.label} does not match its manifest: ${detail}`,
    );
  }
}
