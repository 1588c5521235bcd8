import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  etag?: string;
  lastModified?: Date;
}

export interface ReadRange {
  start: number;
  /** Inclusive end offset. */
  end: number;
}

/**
 * Object storage seen as a flat key space under the configured prefix. Keys passed in are
 * relative (`github.com/org/repo/latest.json`); backends add their prefix. Two backends:
 * filesystem (`file://`) and S3 (`s3://bucket/prefix`).
 */
export interface SnapshotStore {
  /** Human-readable location, without credentials, for logs and status. */
  readonly description: string;
  /** Streams `body` to `key`. The object is visible only if the whole stream succeeds. */
  put(
    key: string,
    body: Readable,
    options?: { signal?: AbortSignal; contentType?: string },
  ): Promise<ObjectInfo>;
  /**
   * Stores a file that `write` creates at the path it is given (a temp file the store picks
   * beside the target), then makes it durable and visible as `key`, like `put`: a failed
   * `write` leaves nothing. Only stores that keep objects as local files have it; the
   * archive writer then writes pieces in parallel at their offsets.
   */
  putFile?(
    key: string,
    write: (path: string) => Promise<void>,
    options?: { signal?: AbortSignal },
  ): Promise<ObjectInfo>;
  /** Small objects (manifests): write whole, atomically. */
  putBytes(key: string, body: Buffer, options?: { contentType?: string }): Promise<ObjectInfo>;
  /** Returns undefined when the key does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** A stream of the object (or a byte range); throws SNAPSHOT_NOT_FOUND if missing. */
  get(key: string, options?: { range?: ReadRange; signal?: AbortSignal }): Promise<Readable>;
  /** Returns undefined when the key does not exist. */
  getBytes(key: string): Promise<Buffer | undefined>;
  /**
   * Stores that keep objects as local files: where `key`'s file is (whether or not it
   * exists), so a reader can read it with positioned reads, from several threads.
   */
  localPath?(key: string): string;
  /** Keys under a relative prefix (non-recursive not required; callers filter). */
  list(prefix: string): Promise<ObjectInfo[]>;
  delete(key: string): Promise<void>;
}
