import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { GitMirrorError, redactUrl } from '../errors/gitmirror-error.ts';
import type { CredentialSource, Credentials } from '../git/credentials.ts';
import { requestUpstream } from '../http/upstream-proxy.ts';
import type { HostGate, UpstreamHosts } from '../upstream/host-gate.ts';
import {
  downloadAnswers,
  LFS_MEDIA_TYPE,
  narrowedRequest,
  type UpstreamAction,
  type UpstreamAnswer,
} from './batch-protocol.ts';
import type { LfsObjectId } from './oid.ts';

const API_TIMEOUT_MS = 60_000;
/** No byte of an object for this long aborts its download (the next request tries again). */
const OBJECT_IDLE_TIMEOUT_MS = 2 * 60_000;
const MAX_API_RESPONSE_BYTES = 16 * 1024 * 1024;
const MAX_REDIRECTS = 3;
const USER_AGENT = 'gitmirror (git-lfs cache)';

/** Response headers of upstream's LFS API that a client needs to see. */
export const RELAYED_API_HEADERS = [
  'content-type',
  'lfs-authenticate',
  'www-authenticate',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
];

export interface ApiAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * Talks to upstream's LFS server: its batch API (JSON, with the caller's Authorization) and
 * the object downloads its actions point at. Nothing follows a redirect or an href to a host
 * that is not https, or plain http on a host in GITMIRROR_HTTP_HOSTS. Every request passes its
 * host's gate, as git's do: nothing is sent to a host backed off after a 429/503 with
 * Retry-After (UPSTREAM_THROTTLED, with the wait), and such an answer backs the host off.
 */
export class UpstreamLfs {
  private readonly httpHosts: ReadonlySet<string>;
  private readonly hosts?: UpstreamHosts;

  constructor(options: { httpHosts: ReadonlySet<string>; hosts?: UpstreamHosts }) {
    this.httpHosts = options.httpHosts;
    this.hosts = options.hosts;
  }

  /** The gate of the host `url` names (undefined without upstream protection, as in some tests). */
  gateFor(url: string): HostGate | undefined {
    return this.hosts?.gate(url);
  }

  /** POSTs a JSON body to `{lfsUrl}{suffix}` and reads the whole (bounded) answer. */
  async api(options: {
    lfsUrl: string;
    suffix: string;
    body: Buffer;
    authorization?: string;
  }): Promise<ApiAnswer> {
    const headers: Record<string, string> = {
      accept: LFS_MEDIA_TYPE,
      'content-type': LFS_MEDIA_TYPE,
      'user-agent': USER_AGENT,
      via: '1.1 gitmirror',
    };
    if (options.authorization) headers.authorization = options.authorization;
    const url = `${options.lfsUrl}${options.suffix}`;
    const res = await requestUpstream({
      method: 'POST',
      url,
      headers,
      body: options.body,
      idleTimeoutMs: API_TIMEOUT_MS,
      gate: this.gateFor(url),
    });
    const body = await readBounded(res, url);
    return { status: res.statusCode ?? 502, headers: res.headers, body };
  }

  /**
   * Download actions for objects, asked with the cache's own credentials (prefetch, and
   * downloads no client's batch asked upstream for). Throws unless upstream answers 2xx.
   */
  async downloadActions(options: {
    lfsUrl: string;
    objects: LfsObjectId[];
    credentials?: CredentialSource;
  }): Promise<Map<string, UpstreamAnswer>> {
    // Credentials that expire (a GitHub App's token) must outlast the request, or nothing is sent.
    const credentials = await options.credentials?.forCommand(API_TIMEOUT_MS);
    const answer = await this.api({
      lfsUrl: options.lfsUrl,
      suffix: '/objects/batch',
      body: narrowedRequest({ operation: 'download', objects: [] }, options.objects),
      authorization: credentials ? basicAuthorization(credentials) : undefined,
    });
    if (answer.status < 200 || answer.status >= 300)
      throw new GitMirrorError(
        'UPSTREAM_FAILED',
        `upstream's LFS server answered ${answer.status} to the cache`,
      );
    return downloadAnswers(parseJson(answer.body), options.objects);
  }

  /**
   * Opens an object's download at upstream and returns its body once upstream answered 200 with
   * a plausible length. The bytes are checked against the oid by whoever reads them.
   */
  async openObject(action: UpstreamAction, object: LfsObjectId): Promise<Readable> {
    let href = action.href;
    let header = action.header ?? {};
    for (let hop = 0; ; hop++) {
      const url = this.checkedUrl(href);
      const res = await requestUpstream({
        method: 'GET',
        url: url.toString(),
        headers: { ...header, 'user-agent': USER_AGENT, 'accept-encoding': 'identity', via: '1.1 gitmirror' },
        idleTimeoutMs: OBJECT_IDLE_TIMEOUT_MS,
        gate: this.gateFor(url.toString()),
      });
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (status >= 300 && status < 400 && location && hop < MAX_REDIRECTS) {
        res.resume();
        const next = new URL(location, url);
        // Headers were meant for the host that gave them (as git-lfs does: no Authorization across hosts).
        if (next.host !== url.host) header = {};
        href = next.toString();
        continue;
      }
      if (status !== 200) {
        res.resume();
        throw new GitMirrorError(
          'UPSTREAM_FAILED',
          `upstream answered ${status} to the download of LFS object ${object.oid}`,
          { status: status === 404 || status === 410 ? 404 : 502 },
        );
      }
      const encoding = (res.headers['content-encoding'] ?? 'identity').toLowerCase();
      const length = res.headers['content-length'];
      if (encoding !== 'identity' || (length !== undefined && Number(length) !== object.size)) {
        res.destroy();
        throw new GitMirrorError(
          'LFS_OBJECT_CORRUPT',
          `upstream announced ${length ?? '?'} bytes (${encoding}) for LFS object ${object.oid} of ${object.size} bytes`,
        );
      }
      return res;
    }
  }

  private checkedUrl(href: string): URL {
    let url: URL;
    try {
      url = new URL(href);
    } catch {
      throw new GitMirrorError('UPSTREAM_FAILED', 'upstream gave a download URL that is not a URL');
    }
    const plainHttpAllowed = url.protocol === 'http:' && this.httpHosts.has(url.host.toLowerCase());
    if ((url.protocol !== 'https:' && !plainHttpAllowed) || url.username || url.password)
      throw new GitMirrorError(
        'UPSTREAM_FAILED',
        `upstream's download URL ${redactUrl(`${url.protocol}//${url.host}/`)}… is neither https nor a GITMIRROR_HTTP_HOSTS host`,
      );
    return url;
  }
}

export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new GitMirrorError('UPSTREAM_FAILED', "upstream's LFS answer is not JSON");
  }
}

export function basicAuthorization(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

async function readBounded(res: IncomingMessage, url: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res) {
      size += (chunk as Buffer).length;
      if (size > MAX_API_RESPONSE_BYTES) {
        res.destroy();
        throw new GitMirrorError(
          'UPSTREAM_FAILED',
          `upstream's answer from ${redactUrl(url)} is over 16 MiB`,
        );
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof GitMirrorError) throw err;
    throw new GitMirrorError('UPSTREAM_FAILED', `upstream's answer from ${redactUrl(url)} broke off`, {
      cause: err,
    });
  }
  return Buffer.concat(chunks);
}
