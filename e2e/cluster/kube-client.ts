import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';

/**
 * A small Kubernetes REST client over node:https with client-certificate authentication, for
 * the test kubelet and scheduler (each with its own identity, so the API server's Node
 * authorizer and RBAC judge them as they would a real kubelet). Small on purpose: every
 * request is visible here, with the exact patch type it sends.
 */

export interface KubeIdentity {
  server: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

export type PatchType = 'strategic' | 'merge' | 'json';

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  strategic: 'application/strategic-merge-patch+json',
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
};

export class KubeError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

const REQUEST_TIMEOUT_MS = 30_000;

export class KubeClient {
  private readonly server: URL;
  private readonly agent: Agent;

  constructor(identity: KubeIdentity) {
    this.server = new URL(identity.server);
    this.agent = new Agent({
      ca: readFileSync(identity.caFile),
      cert: readFileSync(identity.certFile),
      key: readFileSync(identity.keyFile),
      keepAlive: true,
      maxSockets: 16,
    });
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, body);
  }

  patch<T>(path: string, body: unknown, type: PatchType): Promise<T> {
    return this.request<T>('PATCH', path, body, PATCH_CONTENT_TYPES[type]);
  }

  delete<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('DELETE', path, body);
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    let response: { status: number; text: string };
    try {
      response = await this.send(method, path, payload, contentType);
    } catch (err) {
      // A kept-alive connection the server closed while idle fails before any answer; every
      // request here is safe to send again (status patches, reads, token and binding requests).
      if (!isConnectionReset(err)) throw err;
      response = await this.send(method, path, payload, contentType);
    }
    if (response.status >= 200 && response.status < 300) return parseBody(response.text) as T;
    throw toKubeError(response.status, response.text, `${method} ${path}`);
  }

  private send(
    method: string,
    path: string,
    payload: Buffer | undefined,
    contentType: string,
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, this.server),
        {
          method,
          agent: this.agent,
          timeout: REQUEST_TIMEOUT_MS,
          headers: {
            accept: 'application/json',
            ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /**
   * Streams watch events of `path` (a collection URL with its query) from `resourceVersion`
   * until the server ends the stream or `signal` aborts. Resolves when the stream ends; the
   * caller re-lists or re-watches.
   */
  watch<T>(
    path: string,
    resourceVersion: string,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const url = new URL(path, this.server);
    url.searchParams.set('watch', 'true');
    url.searchParams.set('resourceVersion', resourceVersion);
    url.searchParams.set('allowWatchBookmarks', 'true');
    url.searchParams.set('timeoutSeconds', String(240 + Math.floor(Math.random() * 60)));
    return new Promise((resolve, reject) => {
      const req = request(url, { method: 'GET', agent: this.agent, signal }, (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            reject(toKubeError(res.statusCode ?? 0, Buffer.concat(chunks).toString(), `watch ${path}`)),
          );
          return;
        }
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let newline = buffered.indexOf('\n');
          while (newline >= 0) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
            newline = buffered.indexOf('\n');
          }
        });
        res.on('end', () => resolve());
        res.on('error', (err) => (signal.aborted ? resolve() : reject(err)));
      });
      req.on('error', (err) => (signal.aborted ? resolve() : reject(err)));
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function isConnectionReset(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || (err as Error).message === 'socket hang up';
}

/** JSON for API objects; health endpoints such as /readyz answer plain `ok`. */
function parseBody(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function toKubeError(status: number, text: string, what: string): KubeError {
  let reason = '';
  let message = text.slice(0, 500);
  try {
    const parsed = JSON.parse(text) as { reason?: string; message?: string };
    reason = parsed.reason ?? '';
    message = parsed.message ?? message;
  } catch {
    // Not a Status object.
  }
  return new KubeError(status, reason, `${what}: ${status} ${reason}: ${message}`);
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeError && err.status === 404;
}

export function isConflict(err: unknown): boolean {
  return err instanceof KubeError && err.status === 409;
}

interface ListResult<T> {
  metadata: { resourceVersion: string };
  items: T[];
}

/**
 * List, then watch from the list's resourceVersion, forever: the handler sees every object
 * once per list (`sync`) and every change after. A 410 Gone (compacted history) or any other
 * error re-lists after a short pause, so an API server that restarts is listed again as soon
 * as it answers. `error` hears of a failure only when it differs from the one before (not of
 * every retry while the server is down), and `recovered` of the list that ended the streak.
 * Stops when `signal` aborts.
 */
export async function listWatch<T extends { metadata?: { uid?: string } }>(
  client: KubeClient,
  path: string,
  handler: {
    sync(items: T[]): void;
    event(event: WatchEvent<T>): void;
    error?(err: unknown): void;
    recovered?(failures: number): void;
  },
  signal: AbortSignal,
): Promise<void> {
  let failures = 0;
  let lastError = '';
  while (!signal.aborted) {
    try {
      const list = await client.get<ListResult<T>>(path);
      if (failures > 0) handler.recovered?.(failures);
      failures = 0;
      lastError = '';
      handler.sync(list.items);
      let resourceVersion = list.metadata.resourceVersion;
      let gone = false;
      while (!signal.aborted && !gone) {
        await client.watch<T>(
          path,
          resourceVersion,
          (event) => {
            if (event.type === 'ERROR') {
              gone = true;
              return;
            }
            const rv = (event.object as { metadata?: { resourceVersion?: string } }).metadata
              ?.resourceVersion;
            if (rv) resourceVersion = rv;
            if (event.type !== 'BOOKMARK') handler.event(event);
          },
          signal,
        );
      }
    } catch (err) {
      if (signal.aborted) return;
      failures++;
      const message = (err as Error).message;
      if (message !== lastError) handler.error?.(err);
      lastError = message;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
