import { GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * Turns an AWS SDK failure into a GitMirrorError whose message names the operation, the
 * object and what S3 said, and nothing else. The SDK error is deliberately not kept as
 * `cause`: it carries request metadata a log serializer would print, and signing failures
 * echo access key ids.
 */

interface SdkErrorShape {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

/** AWS access key ids (AKIA…/ASIA…) and long opaque tokens are cut from S3's own messages. */
function scrub(message: string): string {
  return message
    .replace(/\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b/g, '[key-id]')
    .replace(/[A-Za-z0-9+/=]{40,}/g, '[redacted]')
    .slice(0, 300);
}

export function s3Status(err: unknown): number | undefined {
  return (err as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
}

/** The object is missing. A missing bucket is a misconfigured store, not a missing snapshot. */
export function isS3NotFound(err: unknown): boolean {
  const e = err as SdkErrorShape | undefined;
  if (e?.name === 'NoSuchBucket') return false;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || s3Status(err) === 404;
}

export function isS3PreconditionFailed(err: unknown): boolean {
  const e = err as SdkErrorShape | undefined;
  return e?.name === 'PreconditionFailed' || s3Status(err) === 412;
}

export function describeS3Error(err: unknown): string {
  const e = (err ?? {}) as SdkErrorShape;
  const parts = [e.name ?? e.code ?? 'Error'];
  const status = s3Status(err);
  if (status !== undefined) parts.push(`HTTP ${status}`);
  if (e.message && e.message !== e.name) parts.push(scrub(e.message));
  if (e.$metadata?.requestId) parts.push(`request id ${e.$metadata.requestId}`);
  return parts.join(', ');
}

/** `missingMeansNotFound`: false for writes, where a 404 can only mean the bucket is gone. */
export function s3Failure(
  op: string,
  location: string,
  err: unknown,
  missingMeansNotFound = true,
): GitMirrorError {
  if (err instanceof GitMirrorError) return err;
  if (missingMeansNotFound && isS3NotFound(err))
    return new GitMirrorError('SNAPSHOT_NOT_FOUND', `${location} does not exist`);
  return new GitMirrorError('SNAPSHOT_STORE_FAILED', `S3 ${op} ${location} failed: ${describeS3Error(err)}`);
}
