import { GitMirrorError } from '../errors/gitmirror-error.ts';
import { isObjectSize, isOid, type LfsObjectId } from './oid.ts';

/**
 * The Git LFS batch API's JSON (https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md),
 * parsed strictly where the cache acts on it and passed on verbatim where it does not.
 */

export const LFS_MEDIA_TYPE = 'application/vnd.git-lfs+json';

/** Objects per batch request; git-lfs sends at most 100. Larger requests get 413. */
export const MAX_BATCH_OBJECTS = 1000;
export const MAX_BATCH_BODY_BYTES = 1024 * 1024;

export interface BatchRequest {
  operation: 'download' | 'upload';
  transfers?: string[];
  ref?: { name: string };
  objects: RequestedObject[];
  hash_algo?: string;
}

/** An object as the client named it; `valid` is false when oid or size is malformed. */
export interface RequestedObject {
  oid: string;
  size: number;
  valid: boolean;
}

export interface Action {
  href: string;
  header?: Record<string, string>;
  expires_in?: number;
  expires_at?: string;
}

export interface ObjectError {
  code: number;
  message: string;
}

export interface ObjectAnswer {
  oid: string;
  size: number;
  authenticated?: boolean;
  actions?: Record<string, Action>;
  error?: ObjectError;
}

export interface BatchResponse {
  transfer?: string;
  objects: ObjectAnswer[];
  hash_algo?: string;
}

function invalid(message: string, status = 422): never {
  throw new GitMirrorError('BAD_REQUEST', message, { status });
}

/**
 * Parses a batch request body. Request-level problems (not JSON, no operation, too many
 * objects) throw BAD_REQUEST with the status the spec names; a malformed object is kept with
 * `valid: false` so it gets its own 422 while the others are answered.
 */
export function parseBatchRequest(body: Buffer): BatchRequest {
  if (body.length > MAX_BATCH_BODY_BYTES) invalid(`batch request is over ${MAX_BATCH_BODY_BYTES} bytes`, 413);
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    invalid('batch request is not JSON', 400);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    invalid('batch request is not a JSON object');
  const raw = json as Record<string, unknown>;
  if (raw.operation !== 'download' && raw.operation !== 'upload')
    invalid('operation must be "download" or "upload"');
  if (!Array.isArray(raw.objects)) invalid('objects must be an array');
  if (raw.objects.length > MAX_BATCH_OBJECTS)
    invalid(`more than ${MAX_BATCH_OBJECTS} objects in one batch`, 413);
  const request: BatchRequest = { operation: raw.operation, objects: raw.objects.map(requestedObject) };
  if (raw.transfers !== undefined) {
    if (!Array.isArray(raw.transfers) || !raw.transfers.every((t) => typeof t === 'string'))
      invalid('transfers must be an array of strings');
    request.transfers = raw.transfers as string[];
  }
  if (raw.ref !== undefined && raw.ref !== null) {
    const name = (raw.ref as { name?: unknown }).name;
    if (typeof name !== 'string') invalid('ref.name must be a string');
    request.ref = { name };
  }
  if (raw.hash_algo !== undefined) {
    if (typeof raw.hash_algo !== 'string') invalid('hash_algo must be a string');
    request.hash_algo = raw.hash_algo;
  }
  return request;
}

function requestedObject(value: unknown): RequestedObject {
  const { oid, size } = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const valid = isOid(oid) && isObjectSize(size);
  return {
    oid: typeof oid === 'string' ? oid.slice(0, 128) : '',
    size: typeof size === 'number' ? size : -1,
    valid,
  };
}

/** The request upstream gets for some of the client's objects: the client's own, narrowed. */
export function narrowedRequest(request: BatchRequest, objects: LfsObjectId[]): Buffer {
  const body: Record<string, unknown> = {
    operation: request.operation,
    transfers: ['basic'],
    objects: objects.map(({ oid, size }) => ({ oid, size })),
  };
  if (request.ref) body.ref = request.ref;
  body.hash_algo = 'sha256';
  return Buffer.from(JSON.stringify(body));
}

/**
 * Reads upstream's answer to a download batch: per requested oid, its download action or its
 * error. Anything upstream did not answer, or answered in a shape we cannot use, is an error
 * for that object rather than a reason to fail the rest.
 */
export function downloadAnswers(json: unknown, asked: LfsObjectId[]): Map<string, UpstreamAnswer> {
  const answers = new Map<string, UpstreamAnswer>();
  const { objects, hash_algo: hashAlgo } = (json ?? {}) as { objects?: unknown; hash_algo?: unknown };
  const byOid = new Map<string, Record<string, unknown>>();
  if (Array.isArray(objects))
    for (const o of objects)
      if (o && typeof o === 'object') byOid.set(String((o as { oid?: unknown }).oid), o);
  for (const object of asked) {
    const answer =
      hashAlgo !== undefined && hashAlgo !== 'sha256'
        ? { error: { code: 409, message: `upstream names objects with ${String(hashAlgo)}` } }
        : answerFor(byOid.get(object.oid), object);
    answers.set(object.oid, answer);
  }
  return answers;
}

function answerFor(o: Record<string, unknown> | undefined, asked: LfsObjectId): UpstreamAnswer {
  if (!o) return { error: { code: 502, message: 'upstream did not answer for this object' } };
  if (o.error && typeof o.error === 'object') {
    const e = o.error as { code?: unknown; message?: unknown };
    return {
      error: {
        code: typeof e.code === 'number' ? e.code : 502,
        message: typeof e.message === 'string' ? e.message.slice(0, 500) : 'upstream refused this object',
      },
    };
  }
  const action = downloadAction(o);
  if (!action) return { error: { code: 502, message: 'upstream gave no download action' } };
  if (o.size !== asked.size)
    return { error: { code: 422, message: `upstream says the object has ${String(o.size)} bytes` } };
  return { action };
}

export type UpstreamAnswer =
  | { action: UpstreamAction; error?: undefined }
  | { error: ObjectError; action?: undefined };

/** Where upstream says an object's bytes are: its href and the headers to send there. */
export interface UpstreamAction {
  href: string;
  header?: Record<string, string>;
}

function downloadAction(o: Record<string, unknown>): UpstreamAction | undefined {
  // `_links` is the pre-1.0 name of `actions`; some servers still send it.
  const actions = (o.actions ?? o._links) as Record<string, unknown> | undefined;
  const download = actions?.download as { href?: unknown; header?: unknown } | undefined;
  if (!download || typeof download.href !== 'string') return undefined;
  const header: Record<string, string> = {};
  if (download.header && typeof download.header === 'object')
    for (const [k, v] of Object.entries(download.header)) if (typeof v === 'string') header[k] = v;
  return Object.keys(header).length > 0 ? { href: download.href, header } : { href: download.href };
}

/** An LFS error body: `message` for git-lfs, `error` for gitmirror's own error shape. */
export function lfsErrorBody(code: string, message: string): Record<string, unknown> {
  return { message, error: { code, message } };
}
