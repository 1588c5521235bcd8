import { GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * Store keys become file paths in the filesystem store and object names in S3. Both
 * backends accept only keys of plain `/`-separated segments, so no key can climb out of the
 * store root or alias another key (`a//b`, `a/./b`), whatever a caller passes in.
 */

const MAX_KEY_LENGTH = 1024;
/** Names containing this are the filesystem store's in-progress files; no key may use it. */
export const TEMP_MARKER = '.gitmirror-tmp-';

function invalid(key: string, why: string): never {
  throw new GitMirrorError('SNAPSHOT_STORE_FAILED', `invalid store key "${key.slice(0, 200)}": ${why}`);
}

function checkSegments(key: string, segments: string[]): void {
  for (const segment of segments) {
    if (segment === '') invalid(key, 'empty path segment');
    if (segment === '.' || segment === '..') invalid(key, '"." and ".." segments are not allowed');
    if (segment.includes(TEMP_MARKER)) invalid(key, 'reserved name');
  }
}

function checkCharacters(key: string): void {
  if (key.length > MAX_KEY_LENGTH) invalid(key, `longer than ${MAX_KEY_LENGTH} characters`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f\\]/.test(key)) invalid(key, 'control characters and backslashes are not allowed');
  if (key.startsWith('/')) invalid(key, 'keys are relative');
}

/** Throws SNAPSHOT_STORE_FAILED unless `key` names an object. */
export function validateStoreKey(key: string): void {
  checkCharacters(key);
  if (key === '') invalid(key, 'empty key');
  checkSegments(key, key.split('/'));
}

/** A list prefix is a key, a key followed by `/`, or empty (everything). */
export function validateListPrefix(prefix: string): void {
  if (prefix === '') return;
  checkCharacters(prefix);
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  checkSegments(prefix, body.split('/'));
}
