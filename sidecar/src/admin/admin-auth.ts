import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { NextFunction, Request, Response } from 'express';
import type { Clock } from '../../../core/clock.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

const RELOAD_EVERY_MS = 5_000;

/**
 * Admin API guard. With a token file: `Authorization: Bearer <token>`, compared in
 * constant time (hashes of equal length, so neither content nor length leaks). The file is
 * re-read every few seconds, because Kubernetes replaces a mounted Secret in place when the
 * operator rotates it. Without a token file: loopback clients only, so an unconfigured
 * sidecar is never administrable from the network.
 */
export async function adminAuth(tokenFile: string | undefined, clock: Clock) {
  if (!tokenFile) return loopbackOnly;
  const current = await adminTokenReader(tokenFile, clock);
  return async (req: Request, _res: Response, next: NextFunction) => {
    const expected = digest(await current());
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
    if (match && timingSafeEqual(digest(match[1]!), expected)) return next();
    next(new GitMirrorError('UNAUTHORIZED', 'missing or wrong bearer token'));
  };
}

/**
 * The admin token as last read: the guard checks against it and the fleet's replicas send it
 * to each other. Re-read at most every few seconds; a missing or empty file mid-rotation keeps
 * the previous token rather than opening up. The first read must succeed.
 */
export async function adminTokenReader(tokenFile: string, clock: Clock): Promise<() => Promise<string>> {
  let token = await loadToken(tokenFile);
  let loadedAt = clock.now();
  return async () => {
    if (clock.now() - loadedAt > RELOAD_EVERY_MS) {
      loadedAt = clock.now();
      token = await loadToken(tokenFile).catch(() => token);
    }
    return token;
  };
}

function loopbackOnly(req: Request, _res: Response, next: NextFunction) {
  if (isLoopback(req.socket.remoteAddress)) return next();
  next(
    new GitMirrorError(
      'UNAUTHORIZED',
      'the admin API answers only loopback clients when no token is configured',
      { status: 403 },
    ),
  );
}

async function loadToken(tokenFile: string): Promise<string> {
  const token = (await readFile(tokenFile, 'utf8')).trim();
  if (!token) throw new GitMirrorError('CONFIG_INVALID', `admin token file ${tokenFile} is empty`);
  return token;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
