import { readFile } from 'node:fs/promises';
import type { Clock } from '../../../core/clock.ts';
import { withUsername } from '../../../core/credentials.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

/** Upstream credentials. Held in memory only; reach git through one process's environment. */
export interface Credentials {
  username: string;
  password: string;
}

/**
 * Where a mirror's upstream credentials come from. Every git command that sends them asks
 * first, saying how long the command may run; a source whose credentials would expire while
 * the command could still be sending requests refuses (`CREDENTIALS_UNAVAILABLE`) rather than
 * let upstream turn it away half-way.
 */
export interface CredentialSource {
  /** Credentials that stay valid for a git command with this timeout. */
  forCommand(timeoutMs: number): Promise<Credentials>;
}

/**
 * Credentials must outlast a command's requests by this much more: clocks of the host that
 * learned the expiry and of this one differ a little, and the last request may be slow.
 */
export const EXPIRY_MARGIN_MS = 10_000;

/**
 * How long credentials must stay valid for a git command with this timeout. Git sends every
 * request that carries credentials before the pack it asked for streams back, and the pack
 * needs none: so a clone's requests are done in its first seconds, and a fetch's negotiation
 * within GITMIRROR_FETCH_TIMEOUT (`requestBoundMs`), whatever the whole command's timeout.
 */
export function validityNeeded(timeoutMs: number, requestBoundMs: number): number {
  return Math.min(timeoutMs, requestBoundMs) + EXPIRY_MARGIN_MS;
}

/**
 * Credentials given to the sidecar: from the credentials file (they do not expire) or the
 * operator's PUT, whose GitHub App tokens carry their expiry and are replaced by the next PUT
 * well before it.
 */
export class HeldCredentials implements CredentialSource {
  readonly #credentials: Credentials;
  readonly #expiresAt: number | undefined;
  readonly #clock: Clock;
  readonly #requestBoundMs: number;

  constructor(
    credentials: Credentials,
    options: { expiresAt?: number; clock: Clock; requestBoundMs: number },
  ) {
    this.#credentials = credentials;
    this.#expiresAt = options.expiresAt;
    this.#clock = options.clock;
    this.#requestBoundMs = options.requestBoundMs;
  }

  /** When the credentials stop working, if they do. */
  get expiresAt(): number | undefined {
    return this.#expiresAt;
  }

  async forCommand(timeoutMs: number): Promise<Credentials> {
    if (this.#expiresAt === undefined) return this.#credentials;
    const needed = validityNeeded(timeoutMs, this.#requestBoundMs);
    const left = this.#expiresAt - this.#clock.now();
    if (left >= needed) return this.#credentials;
    const state = left > 0 ? `expires in ${seconds(left)}` : `expired ${seconds(-left)} ago`;
    throw new GitMirrorError(
      'CREDENTIALS_UNAVAILABLE',
      `the upstream token ${state}, before a command that may send requests for ${seconds(needed)} could finish; nothing was sent, new credentials are needed (under the operator, its next PUT)`,
    );
  }
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)}s`;
}

interface CredentialEntry {
  protocol: string;
  host: string;
  /** Path prefix without leading or trailing slash; empty matches the whole host. */
  path: string;
  credentials: Credentials;
}

/**
 * Credentials from a git-credential-store file (`https://user:password@host[/path]` per
 * line). The entry whose path is the longest prefix of the repository path wins, so one
 * file can hold a host-wide token and per-repository overrides.
 */
export class CredentialsFile {
  private readonly entries: CredentialEntry[];

  private constructor(entries: CredentialEntry[]) {
    this.entries = entries;
  }

  static empty(): CredentialsFile {
    return new CredentialsFile([]);
  }

  static async load(path: string): Promise<CredentialsFile> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new GitMirrorError(
        'CONFIG_INVALID',
        `cannot read credentials file ${path}: ${(err as Error).message}`,
      );
    }
    return CredentialsFile.parse(text);
  }

  static parse(text: string): CredentialsFile {
    const entries: CredentialEntry[] = [];
    text.split('\n').forEach((raw, index) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      entries.push(parseLine(line, index + 1));
    });
    return new CredentialsFile(entries);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Credentials for an upstream URL, or undefined when none apply. */
  lookup(upstream: string): Credentials | undefined {
    const url = new URL(upstream);
    const path = trimSlashes(url.pathname).replace(/\.git$/, '');
    let best: CredentialEntry | undefined;
    for (const entry of this.entries) {
      if (entry.protocol !== url.protocol || entry.host !== url.host.toLowerCase()) continue;
      const entryPath = entry.path.replace(/\.git$/, '');
      const matches = entryPath === '' || path === entryPath || path.startsWith(`${entryPath}/`);
      if (matches && (best === undefined || entryPath.length > best.path.length)) best = entry;
    }
    return best?.credentials;
  }
}

function parseLine(line: string, lineNumber: number): CredentialEntry {
  let url: URL;
  try {
    url = new URL(line);
  } catch {
    // Never echo the line: it holds a secret.
    throw new GitMirrorError('CONFIG_INVALID', `credentials file line ${lineNumber} is not a URL`);
  }
  if (!url.password && !url.username) {
    throw new GitMirrorError('CONFIG_INVALID', `credentials file line ${lineNumber} has no user or password`);
  }
  const username = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  return {
    protocol: url.protocol,
    host: url.host.toLowerCase(),
    path: trimSlashes(url.pathname),
    // A bare token (`https://TOKEN@host`) is a password; hosts accept any user name with it.
    credentials: password ? { username, password } : withUsername({ password: username }),
  };
}

function trimSlashes(path: string): string {
  return path.replace(/^\/+/, '').replace(/\/+$/, '');
}
