import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type Clock, systemClock } from '../../../core/clock.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { UpstreamAction } from './batch-protocol.ts';

/**
 * The token in an object URL the batch API hands out: a short-lived grant to download one
 * object of one repository, so the GET needs no second access check and carries none of the
 * client's credentials. Sealed with AES-256-GCM (authenticated: any change is refused), so
 * it can also carry upstream's own download action for the object (which may hold upstream's
 * per-object credentials) without showing it to anyone: the replica that serves the GET,
 * which need not be the one that answered the batch, can fetch the object from upstream.
 */
export interface ObjectGrant {
  /** Repository id (`host/path`) the object was granted for. */
  repo: string;
  oid: string;
  size: number;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** Upstream's download action, when the batch asked upstream for this object. */
  upstream?: UpstreamAction;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD = Buffer.from('gitmirror lfs object url v1');
/** git-lfs refreshes actions that expire within a few seconds of use; leave room for a long pull. */
export const DEFAULT_TOKEN_TTL_MS = 30 * 60 * 1000;

export class LfsUrlTokens {
  private readonly keyring: LfsKeyring;
  private readonly clock: Clock;
  private readonly ttlMs: number;

  constructor(options: { keyring: LfsKeyring; clock?: Clock; ttlMs?: number }) {
    this.keyring = options.keyring;
    this.clock = options.clock ?? systemClock;
    this.ttlMs = options.ttlMs ?? DEFAULT_TOKEN_TTL_MS;
  }

  issue(grant: Omit<ObjectGrant, 'expiresAt'>): { token: string; expiresInSeconds: number } {
    const expiresAt = this.clock.now() + this.ttlMs;
    const payload = { r: grant.repo, o: grant.oid, s: grant.size, e: expiresAt, u: grant.upstream };
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keyring.current(), iv).setAAD(AAD);
    const sealed = Buffer.concat([cipher.update(JSON.stringify(payload), 'utf8'), cipher.final()]);
    const token = Buffer.concat([iv, sealed, cipher.getAuthTag()]).toString('base64url');
    return { token, expiresInSeconds: Math.floor(this.ttlMs / 1000) };
  }

  /** The grant in `token` for exactly this repository and oid; LFS_TOKEN_INVALID otherwise. */
  open(token: string | undefined, expect: { repo: string; oid: string }): ObjectGrant {
    const payload = token ? this.unseal(token) : undefined;
    if (!payload) throw refused('missing or invalid object token');
    if (payload.r !== expect.repo || payload.o !== expect.oid)
      throw refused('the token is for another object');
    if (!(payload.e > this.clock.now())) throw refused('the object token has expired');
    return { repo: payload.r, oid: payload.o, size: payload.s, expiresAt: payload.e, upstream: payload.u };
  }

  private unseal(token: string): SealedPayload | undefined {
    if (token.length > 16_384 || !/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
    const raw = Buffer.from(token, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES + 2) return undefined;
    const iv = raw.subarray(0, IV_BYTES);
    const tag = raw.subarray(raw.length - TAG_BYTES);
    const sealed = raw.subarray(IV_BYTES, raw.length - TAG_BYTES);
    for (const key of this.keyring.all()) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, iv).setAAD(AAD).setAuthTag(tag);
        const text = Buffer.concat([decipher.update(sealed), decipher.final()]).toString('utf8');
        return JSON.parse(text) as SealedPayload;
      } catch {
        // another key, or forged
      }
    }
    return undefined;
  }
}

interface SealedPayload {
  r: string;
  o: string;
  s: number;
  e: number;
  u?: UpstreamAction;
}

function refused(message: string): GitMirrorError {
  return new GitMirrorError('LFS_TOKEN_INVALID', `${message}; ask the batch API for a new download URL`);
}

const RELOAD_EVERY_MS = 5_000;

/**
 * The key that seals object URLs. Every replica behind the fleet's Service must hold the same
 * one, because the GET may reach another replica than the batch did: it is derived (HKDF) from
 * a secret the fleet already shares, the admin token file the operator distributes, and is
 * re-derived when that file changes; the previous key keeps opening URLs issued before a
 * rotation until they expire. Without a file (a lone sidecar), a random per-process key.
 */
export class LfsKeyring {
  private keys: Buffer[];
  private readonly file?: string;
  private readonly clock: Clock;
  private loadedAt: number;
  private reloading: Promise<void> | false = false;

  private constructor(keys: Buffer[], options: { file?: string; clock?: Clock } = {}) {
    this.keys = keys;
    this.file = options.file;
    this.clock = options.clock ?? systemClock;
    this.loadedAt = this.clock.now();
  }

  static random(): LfsKeyring {
    return new LfsKeyring([randomBytes(32)]);
  }

  static fromSecret(secret: string): LfsKeyring {
    return new LfsKeyring([deriveKey(secret)]);
  }

  static async fromSecretFile(file: string, options: { clock?: Clock } = {}): Promise<LfsKeyring> {
    return new LfsKeyring([deriveKey(await readSecret(file))], { file, clock: options.clock });
  }

  current(): Buffer {
    this.maybeReload();
    return this.keys[0]!;
  }

  all(): Buffer[] {
    this.maybeReload();
    return this.keys;
  }

  /** Resolves once a reload under way (if any) is done: tests. */
  async settled(): Promise<void> {
    await this.reloading;
  }

  private maybeReload(): void {
    const now = this.clock.now();
    if (!this.file || this.reloading || now - this.loadedAt < RELOAD_EVERY_MS) return;
    this.loadedAt = now;
    this.reloading = readSecret(this.file)
      .then((secret) => {
        const key = deriveKey(secret);
        if (!key.equals(this.keys[0]!)) this.keys = [key, this.keys[0]!];
      })
      // A missing or empty file mid-rotation keeps the keys we have.
      .catch(() => {})
      .finally(() => {
        this.reloading = false;
      });
  }
}

async function readSecret(file: string): Promise<string> {
  const secret = (await readFile(file, 'utf8')).trim();
  if (!secret) throw new GitMirrorError('CONFIG_INVALID', `${file} is empty: no key for LFS object URLs`);
  return secret;
}

function deriveKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'gitmirror', 'lfs object url key v1', 32));
}
