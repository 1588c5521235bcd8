import { readFile } from 'node:fs/promises';
import { withUsername } from '../../../core/credentials.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

/** Upstream credentials. Held in memory only; reach git through one process's environment. */
export interface Credentials {
  username: string;
  password: string;
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
