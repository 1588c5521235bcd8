import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export const HOOK_SCRIPT = fileURLToPath(new URL('./pack-objects-hook.sh', import.meta.url));
/** Set for upload-pack: the hook's channel to the sidecar is this descriptor. */
export const HOOK_FD_ENV = 'GITMIRROR_PACK_CACHE_FD';
const MAX_HEADER_BYTES = 64 * 1024;

/** What the hook asked for: pack-objects' argv after the hook's own path, and its stdin. */
export interface HookRequest {
  args: string[];
  stdin: Buffer;
}

/**
 * Arguments before `upload-pack` that make it run the hook instead of pack-objects. On the
 * command line because git honours `uploadpack.packObjectsHook` only from protected
 * configuration (command line, system, global), never from a repository's own config.
 * upload-pack runs the value through the shell with pack-objects' argv appended as `"$@"`.
 */
export function uploadPackHookArgs(): string[] {
  return ['-c', `uploadpack.packObjectsHook=exec /bin/sh '${HOOK_SCRIPT.replaceAll("'", `'\\''`)}'`];
}

/**
 * Reads the hook's request from the sidecar's end of its channel: a `gitmirror-pack-request
 * 1` line, the argument count, the arguments one per line, the stdin byte count, stdin.
 * Resolves undefined when the channel closes before a byte came (upload-pack never ran the
 * hook: a negotiation round, or it failed); rejects on anything but a whole request.
 */
export function readHookRequest(channel: Socket, maxStdinBytes: number): Promise<HookRequest | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let header: RequestHeader | undefined;
    const done = (result: HookRequest | Error | undefined) => {
      channel.off('data', onData);
      channel.off('close', onClose);
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (!header) {
        const parsed = parseRequestHeader(Buffer.concat(chunks), maxStdinBytes);
        if (parsed === 'partial' && size > MAX_HEADER_BYTES)
          return done(new Error('request header too long'));
        if (parsed === 'partial') return;
        if (parsed instanceof Error) return done(parsed);
        header = parsed;
      }
      if (size < header.offset + header.stdinBytes) return;
      const bytes = Buffer.concat(chunks);
      done({ args: header.args, stdin: bytes.subarray(header.offset, header.offset + header.stdinBytes) });
    };
    const onClose = () =>
      done(size === 0 ? undefined : new Error(`the hook channel closed after ${size} bytes`));
    channel.on('data', onData);
    channel.on('close', onClose);
  });
}

interface RequestHeader {
  args: string[];
  stdinBytes: number;
  /** Where stdin starts. */
  offset: number;
}

/** The request's lines before stdin, `partial` if they are not all here, or why it is not a request. */
export function parseRequestHeader(bytes: Buffer, maxStdinBytes: number): RequestHeader | 'partial' | Error {
  let offset = 0;
  const line = (): string | undefined => {
    const end = bytes.indexOf(10, offset);
    if (end < 0) return undefined;
    const text = bytes.toString('utf8', offset, end);
    offset = end + 1;
    return text;
  };
  const magic = line();
  if (magic === undefined) return bytes.length > 64 ? new Error('not a pack request') : 'partial';
  if (magic !== 'gitmirror-pack-request 1') return new Error('not a pack request');
  const count = line();
  if (count === undefined) return 'partial';
  if (!/^\d{1,3}$/.test(count)) return new Error('bad argument count');
  const args: string[] = [];
  for (let i = 0; i < Number(count); i++) {
    const arg = line();
    if (arg === undefined) return 'partial';
    args.push(arg);
  }
  const length = line();
  if (length === undefined) return 'partial';
  if (!/^\d{1,12}$/.test(length) || Number(length) > maxStdinBytes)
    return new Error(`stdin of ${length} bytes is not taken`);
  return { args, stdinBytes: Number(length), offset };
}
