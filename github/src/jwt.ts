import { sign } from 'node:crypto';
import type { GitHubApp } from './app.ts';

/**
 * GitHub's rules for an App's JWT ("Generating a JSON Web Token (JWT) for a GitHub App"):
 * RS256; `iat` set 60 s in the past against clock drift; `exp` no more than 10 minutes into
 * the future; `iss` the App's id. We keep `exp - iat` at exactly 10 minutes, so `exp` is
 * 9 minutes ahead: a clock up to 60 s ahead of GitHub's still passes both checks.
 */
export const JWT_BACKDATE_SECONDS = 60;
export const JWT_LIFETIME_SECONDS = 600;

/**
 * Signs the JWT that authenticates as the App. `nowMs` is GitHub's time as best we know it
 * (our clock plus the offset learned from GitHub's `Date` header), so a skewed host still signs
 * claims GitHub accepts.
 */
export function signAppJwt(app: Pick<GitHubApp, 'appId' | 'privateKey'>, nowMs: number): string {
  const iat = Math.floor(nowMs / 1000) - JWT_BACKDATE_SECONDS;
  const header = base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
  const payload = base64url(JSON.stringify({ iat, exp: iat + JWT_LIFETIME_SECONDS, iss: app.appId }));
  const signingInput = `${header}.${payload}`;
  const signature = sign('sha256', Buffer.from(signingInput), app.privateKey).toString('base64url');
  return `${signingInput}.${signature}`;
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}
