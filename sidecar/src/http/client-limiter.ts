import { createHmac, randomBytes } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ClientKeyMode } from '../config/sidecar-config.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

export interface ClientLimiterOptions {
  /** Requests one client may have in flight on the git listener; 0 turns the limit off. */
  maxConcurrent: number;
  keyBy: ClientKeyMode;
  /** `Retry-After` of a refused request. */
  retryAfterSeconds: number;
  /** Counts refusals (a metric). */
  onRefused?: () => void;
}

/**
 * Per-client fairness on the git listener: a client with more than `maxConcurrent` requests in
 * flight gets `429 Too Many Requests` with `Retry-After` at once, never a request that hangs
 * in a queue. A client is its address, or with `keyBy: credentials` a keyed hash of its
 * `Authorization` header (a CI fleet behind one NAT then counts per token); the secret itself
 * is never kept, and the hash key is random per process.
 */
export class ClientLimiter {
  private readonly options: ClientLimiterOptions;
  private readonly active = new Map<string, number>();
  private readonly hashKey = randomBytes(32);
  private refused = 0;

  constructor(options: ClientLimiterOptions) {
    this.options = options;
  }

  keyOf(req: Pick<Request, 'headers' | 'socket'>): string {
    const authorization = req.headers.authorization;
    if (this.options.keyBy === 'credentials' && authorization)
      return `credentials:${createHmac('sha256', this.hashKey).update(authorization).digest('base64url').slice(0, 22)}`;
    return `address:${req.socket.remoteAddress ?? 'unknown'}`;
  }

  /** Takes a slot for `key`; returns the function that gives it back, or undefined when the client is at its limit. */
  tryEnter(key: string): (() => void) | undefined {
    const { maxConcurrent } = this.options;
    const count = this.active.get(key) ?? 0;
    if (maxConcurrent > 0 && count >= maxConcurrent) {
      this.refused++;
      this.options.onRefused?.();
      return undefined;
    }
    this.active.set(key, count + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const now = (this.active.get(key) ?? 1) - 1;
      if (now > 0) this.active.set(key, now);
      else this.active.delete(key);
    };
  }

  /** Express middleware: admits the request or answers 429 with Retry-After; the slot is freed when the response closes. */
  middleware(): RequestHandler {
    return (req: Request, res: Response, next: NextFunction) => {
      const leave = this.tryEnter(this.keyOf(req));
      if (!leave) {
        const { maxConcurrent, retryAfterSeconds } = this.options;
        next(
          new GitMirrorError(
            'TOO_MANY_REQUESTS',
            `more than ${maxConcurrent} requests at once from this client; retry in ${retryAfterSeconds} s`,
            { retryAfterMs: retryAfterSeconds * 1000 },
          ),
        );
        return;
      }
      res.once('close', leave);
      next();
    };
  }

  status(): { clients: number; refused: number } {
    return { clients: this.active.size, refused: this.refused };
  }
}
