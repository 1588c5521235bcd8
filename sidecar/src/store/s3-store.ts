import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import { rangedDownload } from './ranged-download.ts';
import { isS3NotFound, isS3PreconditionFailed, s3Failure } from './s3-error.ts';
import type { ObjectInfo, ReadRange, SnapshotStore } from './store.ts';
import { validateListPrefix, validateStoreKey } from './store-key.ts';

const MIB = 1024 * 1024;
/** S3's minimum part size; every part but the last must be at least this big. */
const MIN_PART_SIZE = 5 * MIB;

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing `/`. */
  prefix?: string;
  /** Path-style addressing (`host/bucket/key`), needed by MinIO-style servers. */
  forcePathStyle?: boolean;
  /** Overrides `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, which the SDK reads by itself. */
  endpoint?: string;
  /** Defaults to `AWS_REGION`, else us-east-1 (S3-compatible servers rarely care). */
  region?: string;
  /** Multipart part size; memory use of an upload is about partSize × (queueSize + 1). */
  partSize?: number;
  /** Parts uploaded concurrently. */
  queueSize?: number;
  /** Attempts per request, including the first, with the SDK's backoff between them. */
  maxAttempts?: number;
  /** Whole-object reads at least this big use parallel ranged GETs. */
  parallelThreshold?: number;
  parallelChunkSize?: number;
  parallelConcurrency?: number;
}

/**
 * Defaults. 16 MiB parts keep a 10 GiB archive at 640 parts (limit 10,000) while an upload
 * holds only ~48 MiB. Parallel download starts at 64 MiB: below that one stream finishes in
 * well under a second and the extra HEAD and requests only add latency.
 */
export const S3_DEFAULTS = {
  partSize: 16 * MIB,
  queueSize: 2,
  maxAttempts: 5,
  parallelThreshold: 64 * MIB,
  parallelChunkSize: 16 * MIB,
  parallelConcurrency: 4,
} as const;

/** Attempts per ranged chunk: the SDK retries requests, not a body that breaks mid-read. */
const CHUNK_ATTEMPTS = 3;
/** Failed multipart uploads remembered for a later abort; beyond this the oldest is dropped. */
const MAX_UNABORTED = 100;

/** `s3://bucket/prefix`: objects under `prefix/`, written with streaming multipart uploads. */
export class S3SnapshotStore implements SnapshotStore {
  readonly description: string;
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly settings: { [K in keyof typeof S3_DEFAULTS]: number };
  /**
   * Multipart uploads of failed puts that could not be aborted (S3 failed through the
   * abort too), by upload id. Their parts cost storage and never expire without a bucket
   * lifecycle rule, so each later put first tries to abort them again.
   */
  private readonly unaborted = new Map<string, string>();

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.description = `s3://${this.bucket}/${this.prefix}`;
    this.settings = { ...S3_DEFAULTS, ...definedOnly(options) };
    if (this.settings.partSize < MIN_PART_SIZE)
      throw new GitMirrorError('CONFIG_INVALID', `S3 part size must be at least ${MIN_PART_SIZE} bytes`);
    this.client = new S3Client({
      region: options.region ?? (process.env.AWS_REGION || 'us-east-1'),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? false,
      // Checksums only where S3 demands them: many S3-compatible servers reject or mangle
      // the newer default CRC trailers. Integrity is ours anyway: the manifest's sha256.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: this.settings.maxAttempts,
      requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
    });
    skipPayloadSigning(this.client);
  }

  async put(key: string, body: Readable, options: { signal?: AbortSignal; contentType?: string } = {}) {
    const fullKey = this.fullKey(key);
    // Aborting by failing the body, not Upload.abort(): abort() rejects at once while a
    // part or a single PUT may still complete afterwards, whereas a failed body makes the
    // upload settle first and abort its multipart upload.
    const onAbort = () => body.destroy(new GitMirrorError('ABORTED', `upload of ${key} was cancelled`));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let upload: Upload | undefined;
    let completed = false;
    try {
      await this.retryUnaborted();
      if (options.signal?.aborted) onAbort();
      upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: fullKey, Body: body, ContentType: options.contentType },
        partSize: this.settings.partSize,
        queueSize: this.settings.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
      completed = true;
      // A single-part upload that was already on the wire when the signal fired still lands.
      if (options.signal?.aborted) {
        await this.delete(key);
        throw new GitMirrorError('ABORTED', `upload of ${key} was cancelled`);
      }
      return await this.requireHead(key);
    } catch (err) {
      body.destroy();
      // lib-storage has tried to abort already; make sure, and remember it if S3 still fails.
      if (upload?.uploadId && !completed) await this.abortMultipart(fullKey, upload.uploadId);
      if (options.signal?.aborted) throw new GitMirrorError('ABORTED', `upload of ${key} was cancelled`);
      throw s3Failure('upload', this.location(key), err, false);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  async putBytes(key: string, body: Buffer, options: { contentType?: string } = {}): Promise<ObjectInfo> {
    // A single PutObject is atomic in S3: readers see the old object or the new one.
    return this.put(key, Readable.from([body]), options);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
      );
      return { key, sizeBytes: out.ContentLength ?? 0, etag: out.ETag, lastModified: out.LastModified };
    } catch (err) {
      const failure = s3Failure('head', this.location(key), err);
      if (failure.code === 'SNAPSHOT_NOT_FOUND') return undefined;
      throw failure;
    }
  }

  async get(key: string, options: { range?: ReadRange; signal?: AbortSignal } = {}): Promise<Readable> {
    if (options.range) return this.getStream(key, options.range, undefined, options.signal);
    const info = await this.requireHead(key);
    if (info.sizeBytes < this.settings.parallelThreshold || !info.etag)
      return this.getStream(key, undefined, info.etag, options.signal);
    return this.getParallel(key, info, options.signal);
  }

  /** The whole object as ordered parallel ranged GETs, all pinned to one ETag. */
  getParallel(key: string, info: ObjectInfo, signal?: AbortSignal): Readable {
    return rangedDownload({
      size: info.sizeBytes,
      chunkSize: this.settings.parallelChunkSize,
      concurrency: this.settings.parallelConcurrency,
      label: this.location(key),
      signal,
      fetchRange: (start, end, chunkSignal) => this.fetchRange(key, start, end, info.etag, chunkSignal),
    });
  }

  async getBytes(key: string): Promise<Buffer | undefined> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
      );
      return Buffer.from((await out.Body?.transformToByteArray()) ?? []);
    } catch (err) {
      const failure = s3Failure('get', this.location(key), err);
      if (failure.code === 'SNAPSHOT_NOT_FOUND') return undefined;
      throw failure;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validateListPrefix(prefix);
    const found: ObjectInfo[] = [];
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    try {
      const pages = paginateListObjectsV2(
        { client: this.client },
        { Bucket: this.bucket, Prefix: this.prefix ? `${this.prefix}/${prefix}` : prefix },
      );
      for await (const page of pages) {
        for (const obj of page.Contents ?? []) {
          if (!obj.Key) continue;
          found.push({
            key: obj.Key.slice(strip),
            sizeBytes: obj.Size ?? 0,
            etag: obj.ETag,
            lastModified: obj.LastModified,
          });
        }
      }
    } catch (err) {
      throw s3Failure('list', this.location(prefix), err);
    }
    return found;
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
    } catch (err) {
      const failure = s3Failure('delete', this.location(key), err);
      if (failure.code !== 'SNAPSHOT_NOT_FOUND') throw failure;
    }
  }

  /** Aborts a multipart upload; one already gone counts as aborted. Never throws. */
  private async abortMultipart(fullKey: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: fullKey, UploadId: uploadId }),
      );
      this.unaborted.delete(uploadId);
    } catch (err) {
      if (isS3NotFound(err)) {
        this.unaborted.delete(uploadId);
        return;
      }
      this.unaborted.set(uploadId, fullKey);
      if (this.unaborted.size > MAX_UNABORTED) this.unaborted.delete(this.unaborted.keys().next().value!);
    }
  }

  private async retryUnaborted(): Promise<void> {
    for (const [uploadId, fullKey] of [...this.unaborted]) await this.abortMultipart(fullKey, uploadId);
  }

  private async requireHead(key: string): Promise<ObjectInfo> {
    const info = await this.head(key);
    if (!info) throw new GitMirrorError('SNAPSHOT_NOT_FOUND', `${this.location(key)} does not exist`);
    return info;
  }

  private async getStream(
    key: string,
    range?: ReadRange,
    etag?: string,
    signal?: AbortSignal,
  ): Promise<Readable> {
    let body: Readable;
    try {
      body = await this.sendGet(key, range, etag, signal);
    } catch (err) {
      if (signal?.aborted) throw new GitMirrorError('ABORTED', `download of ${key} was cancelled`);
      throw this.readFailure(key, err);
    }
    // A range that breaks off is asked for again from where it stopped: its reader (a restore
    // worker's run of pieces) cannot start over, and sees one unbroken stream.
    const resume = range
      ? (received: number) =>
          this.sendGet(key, { start: range.start + received, end: range.end }, etag, signal)
      : undefined;
    return Readable.from(this.typedBody({ key, body, signal, resume }), { objectMode: false });
  }

  /**
   * The SDK's body, with a break mid-read (connection reset, socket timeout) reported as
   * the store's failure: the raw error says only "aborted", as if someone had cancelled.
   * With `resume`, a break is first retried (CHUNK_ATTEMPTS in all) from the next byte.
   */
  private async *typedBody(read: {
    key: string;
    body: Readable;
    signal?: AbortSignal;
    resume?: (received: number) => Promise<Readable>;
  }): AsyncGenerator<Buffer> {
    const { key, signal, resume } = read;
    let body = read.body;
    let received = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        for await (const chunk of body) {
          received += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        return;
      } catch (err) {
        if (signal?.aborted) throw new GitMirrorError('ABORTED', `download of ${key} was cancelled`);
        if (!resume || attempt >= CHUNK_ATTEMPTS) throw this.brokeOff(key, received, err);
        body = await resume(received).catch((again: unknown) => {
          throw signal?.aborted
            ? new GitMirrorError('ABORTED', `download of ${key} was cancelled`)
            : this.readFailure(key, again);
        });
      }
    }
  }

  private brokeOff(key: string, received: number, err: unknown): GitMirrorError {
    const { message, code } = err as { message?: string; code?: string };
    const detail = [message ?? String(err), code && code !== message ? `(${code})` : undefined];
    return new GitMirrorError(
      'SNAPSHOT_STORE_FAILED',
      `S3 get ${this.location(key)} broke off after ${received} bytes: ${detail.filter(Boolean).join(' ')}`,
    );
  }

  private async sendGet(
    key: string,
    range?: ReadRange,
    etag?: string,
    signal?: AbortSignal,
  ): Promise<Readable> {
    const out = await this.client.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: this.fullKey(key),
        Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        IfMatch: etag,
      }),
      { abortSignal: signal },
    );
    if (!(out.Body instanceof Readable)) throw new Error('response body is not a stream');
    return out.Body;
  }

  private async fetchRange(
    key: string,
    start: number,
    end: number,
    etag: string | undefined,
    signal: AbortSignal,
  ) {
    for (let attempt = 1; ; attempt++) {
      try {
        const body = await this.sendGet(key, { start, end }, etag, signal);
        return Buffer.concat(await body.toArray({ signal }));
      } catch (err) {
        const fatal = isS3PreconditionFailed(err) || isS3NotFound(err) || signal.aborted;
        if (fatal || attempt >= CHUNK_ATTEMPTS) throw this.readFailure(key, err);
      }
    }
  }

  private readFailure(key: string, err: unknown): GitMirrorError {
    if (isS3PreconditionFailed(err))
      return new GitMirrorError('SNAPSHOT_STORE_FAILED', `${this.location(key)} changed during the download`);
    return s3Failure('get', this.location(key), err);
  }

  private fullKey(key: string): string {
    validateStoreKey(key);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  private location(key: string): string {
    return `s3://${this.bucket}/${this.prefix ? `${this.prefix}/` : ''}${key}`;
  }
}

const UPLOAD_COMMANDS = new Set(['PutObjectCommand', 'UploadPartCommand']);

/**
 * Signs uploads with `UNSIGNED-PAYLOAD` instead of a sha256 of the body. The SDK would hash
 * each 16 MiB part synchronously on the main thread, a ~20 ms stall per part and a
 * core-second per GB. Nothing is lost: TLS protects the body in transit, and the archive's
 * own sha256 in the manifest is verified on every restore, over HTTP as well.
 */
function skipPayloadSigning(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (UPLOAD_COMMANDS.has(context.commandName ?? '') && request.headers)
        request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      return next(args);
    },
    { step: 'build', name: 'gitmirrorUnsignedPayload' },
  );
}

function definedOnly(options: S3StoreOptions): Partial<typeof S3_DEFAULTS> {
  const picked: Record<string, number> = {};
  for (const name of Object.keys(S3_DEFAULTS) as (keyof typeof S3_DEFAULTS)[]) {
    const value = options[name];
    if (value !== undefined) {
      if (!Number.isSafeInteger(value) || value <= 0)
        throw new GitMirrorError('CONFIG_INVALID', `S3 option ${name} must be a positive integer`);
      picked[name] = value;
    }
  }
  return picked;
}
