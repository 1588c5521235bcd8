import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { NextFunction, Request, Response } from 'express';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * Admin API guard. With a token file: `Authorization: Bearer <token>`, compared in
 * constant time (hashes of equal length, so neither content nor length leaks). Without
 * one: loopback clients only, so an unconfigured sidecar is never administrable from the
 * network.
 */
export async function adminAuth(tokenFile: string | undefined) {
  const expected = tokenFile ? digest((await readFile(tokenFile, 'utf8')).trim()) : undefined;
  if (tokenFile && expected?.equals(digest(''))) {
    throw new GitMirrorError('CONFIG_INVALID', `admin token file ${tokenFile} is empty`);
  }
  return (req: Request, _res: Response, next: NextFunction) => {
    if (!expected) {
      if (isLoopback(req.socket.remoteAddress)) return next();
      return next(
        new GitMirrorError(
          'UNAUTHORIZED',
          'the admin API answers only loopback clients when no token is configured',
          { status: 403 },
        ),
      );
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
    if (match && timingSafeEqual(digest(match[1]!), expected)) return next();
    next(new GitMirrorError('UNAUTHORIZED', 'missing or wrong bearer token'));
  };
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
